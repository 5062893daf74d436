//! auth: registration, login (argon2id, rate-limited per account and IP), JWT access tokens,
//! rotating refresh tokens whose reuse revokes the whole session, logout, and role grants.
//! Emits `user.registered` and `user.logged_in` through the outbox.

mod limiter;
mod password;
mod routes;
pub mod tokens;

pub use limiter::LoginLimiter;
pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/auth/migrations");

/// auth's migrations (versions 2000-2999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
