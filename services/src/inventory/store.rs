//! Stock operations, called by the inventory routes and by the checkout saga. Every function
//! runs on the caller's transaction and writes its events to the outbox in it, or gives the
//! parts of a statement (`Hold`, `sell_sql`) for the caller to run with its own change.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use events::domain::inventory::{
    InventoryAdjusted, InventoryReleased, InventoryReserved, ReleaseReason,
};
use events::{DomainEvent, Envelope, Sku};
use ingest::outbox::{OutboxError, OutboxRows, enqueue};
use sqlx::postgres::PgArguments;
use sqlx::{PgConnection, PgPool, Postgres};
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

/// A hold of one line's units for an order: its stock, its reservation row and its event,
/// as parts of a statement (the saga places a one-line order and holds its stock in one).
pub struct Hold {
    pub(crate) id: Uuid,
    order_id: Uuid,
    sku: Sku,
    quantity: NonZeroU32,
    pub(crate) expires_at: DateTime<Utc>,
}

impl Hold {
    pub fn new(order_id: Uuid, sku: Sku, quantity: NonZeroU32, ttl: Duration) -> Hold {
        Hold {
            id: Uuid::now_v7(),
            order_id,
            sku,
            quantity,
            expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default(),
        }
    }

    /// The CTEs `held` (the stock row, when enough is free; only if the CTE named `guard`
    /// returned a row) and `reservation`, from the parameters `$first`..`$first+5` (bind
    /// them with [`Hold::bind`]). The event ([`Hold::event`]) belongs under `held`.
    pub fn sql(first: usize, guard: Option<&str>) -> String {
        let p = |i: usize| first + i;
        let only_if = guard
            .map(|g| format!(" AND EXISTS (SELECT 1 FROM {g})"))
            .unwrap_or_default();
        format!(
            "held AS (
                UPDATE inventory.stock SET reserved = reserved + ${q}
                WHERE sku = ${sku} AND on_hand - reserved >= ${q}{only_if} RETURNING sku),
             reservation AS (
                INSERT INTO inventory.reservations (id, order_id, sku, quantity, expires_at)
                SELECT ${id}, ${order}, sku, ${q32}, ${expires} FROM held)",
            sku = p(0),
            q = p(1),
            id = p(2),
            order = p(3),
            q32 = p(4),
            expires = p(5),
        )
    }

    pub fn event(&self) -> Envelope {
        Envelope::new(
            SOURCE,
            InventoryReserved {
                reservation_id: self.id,
                order_id: self.order_id,
                sku: self.sku.clone(),
                quantity: self.quantity,
                expires_at: self.expires_at,
            },
        )
    }

    /// Binds the six parameters of [`Hold::sql`], next in the query's parameters.
    pub fn bind<'q>(
        &self,
        q: sqlx::query::Query<'q, Postgres, PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, PgArguments> {
        let units = i64::from(self.quantity.get());
        q.bind(self.sku.as_str().to_owned())
            .bind(units)
            .bind(self.id)
            .bind(self.order_id)
            .bind(units as i32)
            .bind(self.expires_at)
    }
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
    let sql = format!(
        "WITH {}, events AS ({}) SELECT count(*) FROM held",
        Hold::sql(1, None),
        OutboxRows::sql(7, Some("held"))
    );
    for (sku, qty) in sorted {
        let hold = Hold::new(order_id, sku.clone(), *qty, ttl);
        let mut events = OutboxRows::default();
        events.push(&hold.event())?;
        let query = hold.bind(sqlx::query(sqlx::AssertSqlSafe(sql.clone())));
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
    let mut held: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "UPDATE inventory.reservations SET state = 'released'
         WHERE order_id = $1 AND state = 'held' RETURNING id, sku, quantity",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    // The stock rows in SKU (byte) order, as `reserve` and `sell_sql` take them: orders
    // that share SKUs then wait for each other instead of deadlocking.
    held.sort_by(|a, b| a.1.cmp(&b.1));
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

/// The sale of the held units of the orders that `orders` (a condition on
/// `inventory.reservations`) selects, as parts of the caller's statement (the saga's
/// confirmation, one order or a batch): the CTEs `held` and `sold`. The units leave stock
/// for good. The stock rows are locked first, in SKU byte order as `reserve` and `release`
/// take them (`locked`: the rows are locked as the sort hands them out, whatever plan the
/// update gets), so that orders sharing SKUs wait for each other instead of deadlocking.
pub fn sell_sql(orders: &str) -> String {
    format!(
        "held AS (
            UPDATE inventory.reservations SET state = 'committed'
            WHERE {orders} AND state = 'held'
            RETURNING sku, quantity),
         locked AS (
            SELECT sku FROM inventory.stock WHERE sku IN (SELECT sku FROM held)
            ORDER BY sku COLLATE \"C\" FOR NO KEY UPDATE),
         sold AS (
            UPDATE inventory.stock s
            SET on_hand = s.on_hand - h.q, reserved = s.reserved - h.q
            FROM (SELECT sku, sum(quantity) AS q FROM held GROUP BY sku) h JOIN locked USING (sku)
            WHERE s.sku = h.sku RETURNING s.sku, s.on_hand)"
    )
}

/// Pushes the events of a sale ([`sell_sql`]), one adjustment per line. Their level after
/// the sale is only known to the statement: write them with [`sale_outbox_sql`].
pub fn push_sale_events(
    events: &mut OutboxRows,
    order_id: Uuid,
    lines: &[(Sku, NonZeroU32)],
) -> Result<(), OutboxError> {
    for (sku, qty) in lines {
        events.push(&Envelope::new(
            SOURCE,
            InventoryAdjusted {
                sku: sku.clone(),
                delta: -i64::from(qty.get()),
                on_hand_after: 0, // the statement writes the level it leaves
                reason: format!("sold (order {order_id})"),
            },
        ))?;
    }
    Ok(())
}

/// The outbox part of a statement with a sale ([`sell_sql`]), for all of its events: each
/// sale event is written only if its SKU was sold, with the stock level the sale left; the
/// other events as they are. Every row only when the CTE named `guard` returned a row.
pub fn sale_outbox_sql(first: usize, guard: &str) -> String {
    let adjusted = <InventoryAdjusted as DomainEvent>::TYPE;
    OutboxRows::sql_joined(
        first,
        &format!("LEFT JOIN sold ON e.event_type = '{adjusted}' AND sold.sku = e.key"),
        "CASE WHEN sold.sku IS NULL THEN e.payload
              ELSE convert_to(jsonb_set(convert_from(e.payload, 'UTF8')::jsonb,
                                        '{on_hand_after}', to_jsonb(sold.on_hand))::text, 'UTF8') END",
        &format!(
            "EXISTS (SELECT 1 FROM {guard}) AND (e.event_type <> '{adjusted}' OR sold.sku IS NOT NULL)"
        ),
    )
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
