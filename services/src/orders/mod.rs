//! orders: checkout as a saga over the other services: reserve inventory -> authorize
//! payment -> create shipment -> confirm, with a compensation for every failed step
//! (release stock, void payment). `Idempotency-Key` makes a retried checkout return the
//! same order. Emits `order.placed`, `order.confirmed`, `order.cancelled`.
//!
//! A process dying mid-saga leaves a `placed` order whose stock reservation expires
//! (`inventory::store::release_expired`); recovering such orders is not automated yet.

pub mod batch;
pub mod routes;
pub mod saga;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/orders/migrations");

/// orders' migrations (versions 8000-8999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
