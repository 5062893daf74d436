//! catalog: products with SKU, multi-language names and descriptions, category, JSONB
//! attributes, weight, vendor ownership and price history. Vendors edit their own products,
//! admins any. Emits `product.created`, `product.updated`, `price.changed`.
//! Images are files under the data dir; variants are products of their own that name the
//! product they vary (`variant_of`); facets count categories and attribute values.

pub mod cache;
pub mod images;
mod routes;
pub mod store;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/catalog/migrations");

/// catalog's migrations (versions 3000-3999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
