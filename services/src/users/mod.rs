//! users: profile (locale, phone, preferences), addresses. A customer reads and writes only
//! their own; support and admins may read anyone's profile.

mod routes;

pub use routes::routes;

use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("./src/users/migrations");

/// users' migrations (versions 9000-9999).
pub fn migrator() -> Migrator {
    ingest::db::shared_migrator(&MIGRATOR)
}
