//! cart and wishlist: one cart per customer, priced server-side from the catalog on every
//! read (a client never sends a price). Emits `cart.item_added` and `cart.item_removed`.

pub mod batch;
mod routes;
pub mod store;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/cart/migrations");

/// cart's migrations (versions 7000-7999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
