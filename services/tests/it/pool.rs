//! The connection pool's release (the patched sqlx-core in vendor/, which settles a returned
//! connection without the upstream ping): whatever a dropped result or a dropped transaction
//! left is cleared when the connection goes back, and the connection stays in the pool.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::support::backend_pid;

/// A pool of one connection, so every acquire gets the same one unless it was closed, and
/// a connection outside it to watch its backend.
async fn one_connection_pool(
    opts: PgPoolOptions,
    connect: PgConnectOptions,
) -> (PgPool, PgConnection) {
    let observer = PgConnection::connect_with(&connect).await.unwrap();
    let pool = opts.max_connections(1).connect_with(connect).await.unwrap();
    (pool, observer)
}

/// The state `pg_stat_activity` shows for a backend, as soon as it matches `want` (or what
/// it shows after 5 s).
async fn backend_state(observer: &mut PgConnection, pid: i32, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_optional(&mut *observer)
                .await
                .unwrap()
                .flatten();
        let state = state.unwrap_or_else(|| "gone".into());
        if state == want || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn a_dropped_transaction_is_rolled_back_as_its_connection_returns_to_the_pool(
    opts: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (pool, mut observer) = one_connection_pool(opts, connect).await;
    sqlx::query("CREATE TABLE t (id int PRIMARY KEY, n int)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1, 0)")
        .execute(&pool)
        .await
        .unwrap();

    let mut conn = pool.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await;
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("UPDATE t SET n = 1 WHERE id = 1")
        .execute(&mut *tx)
        .await
        .unwrap();
    drop(tx); // neither committed nor rolled back
    drop(conn); // back to the pool, unused after

    // The rollback ran on release, not on the connection's next use: the backend is idle,
    // not idle in a transaction holding the row's lock.
    assert_eq!(backend_state(&mut observer, pid, "idle").await, "idle");
    let n: i32 = sqlx::query_scalar("UPDATE t SET n = n + 10 WHERE id = 1 RETURNING n")
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(n, 10, "the dropped transaction's update is not there");
    // And the connection itself stayed in the pool.
    assert_eq!(backend_pid(&mut pool.acquire().await.unwrap()).await, pid);
}

#[sqlx::test(migrations = false)]
async fn a_result_dropped_midway_is_drained_as_its_connection_returns_to_the_pool(
    opts: PgPoolOptions,
    connect: PgConnectOptions,
) {
    use futures::StreamExt;

    let (pool, mut observer) = one_connection_pool(opts, connect).await;
    let mut conn = pool.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await;
    {
        // ~20 MB of rows: far more than the socket buffers hold, so the server stays busy
        // sending them until the client reads them.
        let mut rows = sqlx::query_scalar::<_, String>(
            "SELECT repeat('x', 1000) FROM generate_series(1, 20000)",
        )
        .fetch(&mut *conn);
        assert!(rows.next().await.unwrap().is_ok());
    } // the stream is dropped after its first row
    drop(conn);

    // The release read the rest: the backend goes idle without anyone using it (left as it
    // was, it would stay active, blocked writing to the client).
    assert_eq!(backend_state(&mut observer, pid, "idle").await, "idle");
    // The next user gets its own answer, on the same connection.
    let (n, again): (i32, i32) = sqlx::query_as("SELECT 8, pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((n, again), (8, pid));
}
