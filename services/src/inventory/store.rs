//! Stock operations, called by the inventory routes and by the checkout saga. Every function
//! runs on the caller's transaction and writes its events to the outbox in it (`commit` hands
//! them to the caller, who writes them with its own change).

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::Utc;
use events::domain::inventory::{
    InventoryAdjusted, InventoryReleased, InventoryReserved, ReleaseReason,
};
use events::{Envelope, Sku};
use ingest::outbox::{OutboxError, OutboxRows, enqueue};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

const SOURCE: &str = "/shopstream/inventory";

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("not enough stock of {0}")]
    OutOfStock(Sku),
    #[error("stock of {sku} cannot go below zero (on hand {on_hand}, reserved {reserved})")]
    Negative {
        sku: Sku,
        on_hand: i64,
        reserved: i64,
    },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Adds (or removes, with a negative delta) units on hand; creates the SKU if new.
pub async fn adjust(
    conn: &mut PgConnection,
    sku: &Sku,
    delta: i64,
    reason: &str,
) -> Result<i64, InventoryError> {
    let row: Result<(i64,), sqlx::Error> = sqlx::query_as(
        "INSERT INTO inventory.stock (sku, on_hand) VALUES ($1, $2)
         ON CONFLICT (sku) DO UPDATE SET on_hand = inventory.stock.on_hand + $2
         RETURNING on_hand",
    )
    .bind(sku.as_str())
    .bind(delta)
    .fetch_one(&mut *conn)
    .await;
    let on_hand = match row {
        Ok((v,)) => v,
        Err(sqlx::Error::Database(e)) if e.is_check_violation() => {
            let (on_hand, reserved): (i64, i64) =
                sqlx::query_as("SELECT on_hand, reserved FROM inventory.stock WHERE sku = $1")
                    .bind(sku.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or((0, 0));
            return Err(InventoryError::Negative {
                sku: sku.clone(),
                on_hand,
                reserved,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let event = InventoryAdjusted {
        sku: sku.clone(),
        delta,
        on_hand_after: on_hand,
        reason: reason.into(),
    };
    enqueue(conn, &Envelope::new(SOURCE, event)).await?;
    Ok(on_hand)
}

/// Holds units of every line for an order until `ttl` passes, or fails as a whole.
/// Lines are taken in SKU order so concurrent orders cannot deadlock. Each line is one
/// statement (the stock, its reservation and its event together), so a one-line order is
/// atomic without a transaction; with more lines the caller's transaction makes it whole.
pub async fn reserve(
    conn: &mut PgConnection,
    order_id: Uuid,
    lines: &[(Sku, NonZeroU32)],
    ttl: Duration,
) -> Result<(), InventoryError> {
    let mut sorted: Vec<&(Sku, NonZeroU32)> = lines.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    let sql = format!(
        "WITH held AS (
            UPDATE inventory.stock SET reserved = reserved + $2
            WHERE sku = $1 AND on_hand - reserved >= $2 RETURNING sku),
         reservation AS (
            INSERT INTO inventory.reservations (id, order_id, sku, quantity, expires_at)
            SELECT $3, $4, sku, $5, $6 FROM held),
         events AS ({})
         SELECT count(*) FROM held",
        OutboxRows::sql(7, Some("held"))
    );
    for (sku, qty) in sorted {
        let q = i64::from(qty.get());
        let id = Uuid::now_v7();
        let mut events = OutboxRows::default();
        events.push(&Envelope::new(
            SOURCE,
            InventoryReserved {
                reservation_id: id,
                order_id,
                sku: sku.clone(),
                quantity: *qty,
                expires_at,
            },
        ))?;
        let query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(sku.as_str())
            .bind(q)
            .bind(id)
            .bind(order_id)
            .bind(q as i32)
            .bind(expires_at);
        let held: i64 = events.fetch_count(query, &mut *conn).await?;
        if held == 0 {
            return Err(InventoryError::OutOfStock(sku.clone()));
        }
    }
    Ok(())
}

/// Returns an order's held units to stock.
pub async fn release(
    conn: &mut PgConnection,
    order_id: Uuid,
    reason: ReleaseReason,
) -> Result<u32, InventoryError> {
    let held: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "UPDATE inventory.reservations SET state = 'released'
         WHERE order_id = $1 AND state = 'held' RETURNING id, sku, quantity",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    for (id, sku, qty) in &held {
        sqlx::query("UPDATE inventory.stock SET reserved = reserved - $2 WHERE sku = $1")
            .bind(sku)
            .bind(i64::from(*qty))
            .execute(&mut *conn)
            .await?;
        let (Ok(sku), Some(quantity)) = (Sku::parse(sku.clone()), NonZeroU32::new(*qty as u32))
        else {
            continue;
        };
        let event = InventoryReleased {
            reservation_id: *id,
            order_id,
            sku,
            quantity,
            reason,
        };
        enqueue(conn, &Envelope::new(SOURCE, event)).await?;
    }
    Ok(held.len() as u32)
}

/// Turns an order's held units into sold ones: they leave stock for good. One statement;
/// the events (one adjustment per SKU) are added to `events`, which the caller writes in
/// the same transaction.
pub async fn commit(
    conn: &mut PgConnection,
    order_id: Uuid,
    events: &mut OutboxRows,
) -> Result<(), InventoryError> {
    let sold: Vec<(String, i32, i64)> = sqlx::query_as(
        "WITH held AS (
            UPDATE inventory.reservations SET state = 'committed'
            WHERE order_id = $1 AND state = 'held' RETURNING sku, quantity)
         UPDATE inventory.stock s
            SET on_hand = s.on_hand - held.quantity, reserved = s.reserved - held.quantity
         FROM held WHERE s.sku = held.sku
         RETURNING s.sku, held.quantity, s.on_hand",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    for (sku, qty, on_hand) in sold {
        if let Ok(sku) = Sku::parse(sku) {
            let event = InventoryAdjusted {
                sku,
                delta: -i64::from(qty),
                on_hand_after: on_hand,
                reason: format!("sold (order {order_id})"),
            };
            events.push(&Envelope::new(SOURCE, event))?;
        }
    }
    Ok(())
}

/// Releases reservations whose time ran out (an abandoned or crashed checkout).
pub async fn release_expired(pool: &PgPool) -> Result<u32, InventoryError> {
    let orders: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT DISTINCT order_id FROM inventory.reservations WHERE state = 'held' AND expires_at < now()",
    )
    .fetch_all(pool)
    .await?;
    let mut released = 0;
    for (order,) in orders {
        let mut tx = pool.begin().await?;
        released += release(&mut tx, order, ReleaseReason::Expired).await?;
        tx.commit().await?;
    }
    Ok(released)
}

/// (on hand, reserved) of a SKU.
pub async fn level(pool: &PgPool, sku: &Sku) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT on_hand, reserved FROM inventory.stock WHERE sku = $1")
        .bind(sku.as_str())
        .fetch_optional(pool)
        .await
}
