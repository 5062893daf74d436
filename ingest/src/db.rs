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
