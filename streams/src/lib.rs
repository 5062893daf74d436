//! Stream processors over the event topics: windowed aggregation, fraud detection and
//! anomaly detection, on a small engine with event-time watermarks, checkpointed state and
//! idempotent sinks (see [`engine`]).

pub mod aggregate;
pub mod align;
pub mod anomaly;
pub mod engine;
pub mod fraud;
pub mod sink;
pub mod table;
pub mod window;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The `streams` schema's migrations (versions 12000–12999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}

pub use engine::{EngineConfig, EngineError, Mode, Processor, RunReport};
