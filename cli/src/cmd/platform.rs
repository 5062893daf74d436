//! Wiring shared by `up`, `serve`, `relay` and `migrate`: the database pool (migrated) and
//! the outbox relay.

use anyhow::Context;
use ingest::EventProducer;
use ingest::outbox::{Relay, RelayConfig};
use sqlx::PgPool;

use crate::config::Config;

/// Connects to PostgreSQL and applies every migration.
pub async fn connect_db(cfg: &Config) -> anyhow::Result<PgPool> {
    let pool = ingest::db::pool_options(cfg.database.max_connections)
        .connect(&cfg.database.url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {} (is the stack up? deploy/local/stack.sh up)",
                cfg.redacted()["database"]["url"]
            )
        })?;
    services::migrate(&pool)
        .await
        .context("applying migrations")?;
    Ok(pool)
}

pub fn relay(cfg: &Config, pool: PgPool) -> anyhow::Result<Relay> {
    Ok(Relay::new(
        pool,
        EventProducer::new(&cfg.kafka)?,
        RelayConfig::default(),
    ))
}
