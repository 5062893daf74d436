//! pricing: promotions (percent or fixed amount, per product, category or store-wide,
//! time-bound, optionally unlocked by a coupon code), applied server-side whenever a cart is
//! priced, at cart and at checkout. Base prices and their history live in the catalog.

mod routes;
pub mod store;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/pricing/migrations");

/// pricing's migrations (versions 11000-11999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
