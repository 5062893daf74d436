//! shipping: rate quotes by weight and zone, shipment creation through a **carrier
//! simulator** (no real carrier is reachable here: it refuses embargoed destinations like a
//! real one), and tracking progression created -> in_transit -> delivered. Emits
//! `shipment.created` and `shipment.delivered`.

mod routes;
pub mod store;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/shipping/migrations");

/// shipping's migrations (versions 6000-6999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
