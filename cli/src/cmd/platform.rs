//! Wiring shared by `up`, `serve`, `relay` and `migrate`: the database pool (migrated) and
//! the outbox relay.

use anyhow::Context;
use ingest::EventProducer;
use ingest::outbox::{Relay, RelayConfig};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::Config;

/// Connects to PostgreSQL and applies every migration.
pub async fn connect_db(cfg: &Config) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(cfg.database.max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        // Ping a connection before handing it out only when it sat idle: a ping on every
        // acquire was one more round trip per statement under load, where connections are
        // never idle long enough to go stale.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > std::time::Duration::from_secs(10) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
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
