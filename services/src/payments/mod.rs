//! payments: a **payment-gateway simulator** (no card network is reachable here) behind a
//! circuit breaker, and the payment records: authorize, capture, void, refund, idempotent
//! per order. Emits `payment.authorized`, `payment.failed`, `payment.refunded`.

pub mod breaker;
pub mod card;
mod routes;
pub mod simulator;
pub mod store;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/payments/migrations");

/// payments' migrations (versions 5000-5999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
