//! auth: registration, login (argon2id, rate-limited per account and IP), JWT access tokens,
//! rotating refresh tokens whose reuse revokes the whole session, logout, and role grants.
//! Emits `user.registered` and `user.logged_in` through the outbox.

mod limiter;
mod password;
mod routes;
pub mod sessions;
pub mod tokens;

pub use limiter::LoginLimiter;
pub use routes::routes;
pub use sessions::SessionCache;

use events::domain::users::Role;
use sqlx::PgPool;
use uuid::Uuid;

/// Sets an account's roles by e-mail, for operators (the first admin has nobody to grant it
/// over the API). Returns the user id, or `None` when no account has that e-mail.
pub async fn grant_roles(
    pool: &PgPool,
    email: &str,
    roles: &[Role],
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("UPDATE auth.users SET roles = $2 WHERE email = $1 RETURNING id")
        .bind(email.trim().to_lowercase())
        .bind(routes::role_names(roles))
        .fetch_optional(pool)
        .await
}

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/auth/migrations");

/// auth's migrations (versions 2000-2999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
