//! Database helpers shared by every crate that owns a schema.

use sqlx::migrate::Migrator;

/// A copy of an embedded migrator that tolerates the other schemas' migrations in the same
/// `_sqlx_migrations` table: each schema owns a range of versions (outbox 1000s, auth 2000s,
/// catalog 3000s, ...), and all of them share one database.
pub fn shared_migrator(embedded: &Migrator) -> Migrator {
    let mut m = Migrator {
        migrations: embedded.migrations.clone(),
        ..Migrator::DEFAULT
    };
    m.set_ignore_missing(true);
    m
}

/// Pool options of the platform's pools: a connection is pinged before it is handed out
/// only when it sat idle over 10 s. A ping on every acquire was one more round trip per
/// statement under load, where connections are never idle long enough to go stale.
pub fn pool_options(max_connections: u32) -> sqlx::postgres::PgPoolOptions {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > std::time::Duration::from_secs(10) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}
