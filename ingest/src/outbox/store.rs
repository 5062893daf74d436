//! The outbox table: writing events inside a service transaction, and its migrations.

use events::Envelope;
use sqlx::PgConnection;
use sqlx::migrate::Migrator;

use crate::kafka::KafkaError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The outbox schema's migrations. Versions 1000-1999 belong to the outbox; every migrator
/// of the platform ignores the others' versions, so they share one database.
pub fn migrator() -> Migrator {
    crate::db::shared_migrator(&MIGRATOR)
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("outbox row {seq} is malformed: {reason}")]
    BadRow { seq: i64, reason: String },
}

/// Writes an event into the outbox on the caller's connection (normally inside the
/// transaction of the state change it describes).
pub async fn enqueue(conn: &mut PgConnection, env: &Envelope) -> Result<(), OutboxError> {
    let headers: Vec<[String; 2]> = env
        .headers()
        .into_iter()
        .map(|(k, v)| [k.to_owned(), v])
        .collect();
    let headers = serde_json::to_value(headers).map_err(|e| OutboxError::BadRow {
        seq: -1,
        reason: e.to_string(),
    })?;
    sqlx::query(
        "INSERT INTO outbox.events (event_id, topic, key, event_type, headers, payload)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(env.id)
    .bind(env.topic().base_name())
    .bind(env.key())
    .bind(env.event_type())
    .bind(headers)
    .bind(env.payload())
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows not yet published.
pub async fn pending_count(conn: &mut PgConnection) -> Result<i64, OutboxError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox.events WHERE published_at IS NULL")
            .fetch_one(conn)
            .await?,
    )
}
