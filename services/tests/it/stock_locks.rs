//! Stock rows are locked in SKU order by every writer that takes several (reserve, release,
//! the confirmation's sale), so two orders sharing SKUs wait for each other instead of
//! deadlocking. Each test holds SKU A from another transaction, lets the writer block on
//! it, then takes B: a writer that had taken B first would deadlock here.

use std::future::Future;
use std::time::{Duration, Instant};

use events::domain::inventory::ReleaseReason;
use services::inventory::store as inventory;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use uuid::Uuid;

use crate::support::backend_pid;

/// Stock of SKUs A and B with one unit of each held for a new order; the stock rows and
/// the reservation rows are both written B first (a writer that follows either physical
/// order would meet B first).
async fn order_holding_b_then_a(pool: &PgPool) -> Uuid {
    services::migrate(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO inventory.stock (sku, on_hand, reserved) VALUES ('LOCK-B', 10, 1), ('LOCK-A', 10, 1)",
    )
    .execute(pool)
    .await
    .unwrap();
    let order = Uuid::now_v7();
    for sku in ["LOCK-B", "LOCK-A"] {
        sqlx::query(
            "INSERT INTO inventory.reservations (id, order_id, sku, quantity, expires_at)
             VALUES ($1, $2, $3, 1, now() + interval '1 hour')",
        )
        .bind(Uuid::now_v7())
        .bind(order)
        .bind(sku)
        .execute(pool)
        .await
        .unwrap();
    }
    order
}

/// Waits until the backend `pid` waits for a lock (the writer blocked on A).
async fn blocked_on_a_lock(pool: &PgPool, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)",
        )
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting {
            return;
        }
        assert!(Instant::now() < deadline, "the writer never waited for A");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `write` on a pooled connection while another transaction holds A: once the writer
/// waits for A, that transaction takes B and commits. Returns the writer's result.
async fn race<T, F, Fut>(pool: &PgPool, write: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(PoolConnection<Postgres>) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let mut holder = holding_a(pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await;
    let writer = tokio::spawn(write(conn));
    blocked_on_a_lock(pool, pid).await;
    let took_b = sqlx::query("UPDATE inventory.stock SET on_hand = on_hand WHERE sku = 'LOCK-B'")
        .execute(&mut holder)
        .await;
    assert!(
        took_b.is_ok(),
        "the writer held B while it waited for A: {took_b:?}"
    );
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    writer.await.unwrap()
}

/// A connection of the pool's database outside the pool, in a transaction holding A.
async fn holding_a(pool: &PgPool) -> PgConnection {
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE inventory.stock SET on_hand = on_hand WHERE sku = 'LOCK-A'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn levels(pool: &PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT sku, on_hand, reserved FROM inventory.stock ORDER BY sku")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_release_takes_the_stock_rows_in_sku_order(pool: PgPool) {
    let order = order_holding_b_then_a(&pool).await;
    let released = race(&pool, move |mut conn| async move {
        let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
        let n = inventory::release(&mut tx, order, ReleaseReason::Compensation)
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(n)
    })
    .await;
    assert_eq!(released, Ok(2));
    assert_eq!(
        levels(&pool).await,
        [("LOCK-A".into(), 10, 0), ("LOCK-B".into(), 10, 0)]
    );
}

#[sqlx::test(migrations = false)]
async fn a_sale_takes_the_stock_rows_in_sku_order(pool: PgPool) {
    let order = order_holding_b_then_a(&pool).await;
    let sql = format!(
        "WITH {} SELECT count(*) FROM sold",
        inventory::sell_sql("order_id = $1")
    );
    let sold = race(&pool, move |mut conn| async move {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .bind(order)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(sold, Ok(2));
    assert_eq!(
        levels(&pool).await,
        [("LOCK-A".into(), 9, 0), ("LOCK-B".into(), 9, 0)]
    );
}
