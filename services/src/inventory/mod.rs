//! inventory: stock per SKU and reservations with expiry. Reserving is one conditional
//! UPDATE per SKU (`on_hand - reserved >= qty`) under CHECK constraints, so stock is never
//! oversold however many buyers race. Emits `inventory.reserved`, `inventory.released`,
//! `inventory.adjusted`.

mod routes;
pub mod store;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/inventory/migrations");

/// inventory's migrations (versions 4000-4999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
