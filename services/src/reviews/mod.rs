//! reviews: ratings and texts per product, one per customer, marked verified when the
//! customer has a confirmed order with the product. Emits `review.posted`.

mod routes;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/reviews/migrations");

/// reviews' migrations (versions 10000-10999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
