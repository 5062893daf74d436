//! The outbox table: writing events inside a service transaction, and its migrations.

use events::Envelope;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgArguments;
use sqlx::{PgConnection, Postgres};

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
    let mut rows = OutboxRows::default();
    rows.push(env)?;
    rows.insert(conn).await
}

/// Outbox rows as column arrays, so that one statement writes them all: alone
/// ([`OutboxRows::insert`]) or as one part of a caller's statement ([`OutboxRows::sql`] and
/// [`OutboxRows::bind`]), which makes the state change and its events a single round trip.
/// Rows get their `seq` in the order they were pushed.
#[derive(Debug, Default)]
pub struct OutboxRows {
    ids: Vec<uuid::Uuid>,
    topics: Vec<&'static str>,
    keys: Vec<String>,
    types: Vec<&'static str>,
    /// Each row's headers as JSON text, `[[name, value], ...]`.
    headers: Vec<String>,
    payloads: Vec<Vec<u8>>,
}

impl OutboxRows {
    pub fn push(&mut self, env: &Envelope) -> Result<(), OutboxError> {
        let headers: Vec<[String; 2]> = env
            .headers()
            .into_iter()
            .map(|(k, v)| [k.to_owned(), v])
            .collect();
        let headers = serde_json::to_string(&headers).map_err(|e| OutboxError::BadRow {
            seq: -1,
            reason: e.to_string(),
        })?;
        self.ids.push(env.id);
        self.topics.push(env.topic().base_name());
        self.keys.push(env.key());
        self.types.push(env.event_type());
        self.headers.push(headers);
        self.payloads.push(env.payload());
        Ok(())
    }

    /// Moves `other`'s rows after these.
    pub fn append(&mut self, mut other: OutboxRows) {
        self.ids.append(&mut other.ids);
        self.topics.append(&mut other.topics);
        self.keys.append(&mut other.keys);
        self.types.append(&mut other.types);
        self.headers.append(&mut other.headers);
        self.payloads.append(&mut other.payloads);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The statement part that inserts the rows, taking its six arrays from the parameters
    /// `$first`..`$first+5` (bind them with [`OutboxRows::bind`] in that place). With `guard`,
    /// the name of a CTE of the same statement, the rows are inserted only if it returned a
    /// row (the change they describe happened).
    pub fn sql(first: usize, guard: Option<&str>) -> String {
        let condition = guard
            .map(|g| format!("EXISTS (SELECT 1 FROM {g})"))
            .unwrap_or_else(|| "true".into());
        Self::sql_joined(first, "", "e.payload", &condition)
    }

    /// [`OutboxRows::sql`] for events that need what only the statement knows: `join` (SQL
    /// after `FROM <the rows> AS e`, such as a `LEFT JOIN` of one of the statement's CTEs)
    /// can be read by `payload`, the expression written as each row's payload, and by
    /// `condition`, which decides per row whether it is written.
    pub fn sql_joined(first: usize, join: &str, payload: &str, condition: &str) -> String {
        let p = |i: usize| first + i;
        format!(
            "INSERT INTO outbox.events (event_id, topic, key, event_type, headers, payload)
             SELECT e.id, e.topic, e.key, e.event_type, e.headers, {payload}
             FROM unnest(${}::uuid[], ${}::text[], ${}::text[], ${}::text[], ${}::text[], ${}::bytea[])
                  WITH ORDINALITY AS e(id, topic, key, event_type, headers, payload, n) {join}
             WHERE {condition}
             ORDER BY e.n",
            p(0),
            p(1),
            p(2),
            p(3),
            p(4),
            p(5)
        )
    }

    /// Binds the six arrays of [`OutboxRows::sql`], next in the query's parameters.
    pub fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, Postgres, PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, PgArguments> {
        q.bind(self.ids)
            .bind(self.topics)
            .bind(self.keys)
            .bind(self.types)
            .bind(self.headers)
            .bind(self.payloads)
    }

    /// Binds the rows into `q` (see [`OutboxRows::bind`]), runs it and returns the count the
    /// statement selects last: how many rows the guarded change touched, 0 when it did not
    /// happen and no event was written.
    pub async fn fetch_count<'q, 'e, E: sqlx::PgExecutor<'e>>(
        self,
        q: sqlx::query::Query<'q, Postgres, PgArguments>,
        executor: E,
    ) -> Result<i64, sqlx::Error> {
        use sqlx::Row;
        self.bind(q).fetch_one(executor).await?.try_get(0)
    }

    /// Inserts the rows in one statement on the caller's connection.
    pub async fn insert(self, conn: &mut PgConnection) -> Result<(), OutboxError> {
        if self.is_empty() {
            return Ok(());
        }
        self.bind(sqlx::query(sqlx::AssertSqlSafe(Self::sql(1, None))))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Rows not yet published.
pub async fn pending_count(conn: &mut PgConnection) -> Result<i64, OutboxError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox.events")
        .fetch_one(conn)
        .await?)
}
