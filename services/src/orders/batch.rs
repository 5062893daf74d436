//! The checkout's statements shared by concurrent checkouts ([`crate::batch`]): one reads
//! the cart (with the order under the idempotency key, and the blocklist's word) of every
//! checkout starting, one places (and holds the stock of) every one-line order waiting, one
//! confirms every order waiting (payment, shipment, sale, order, history, cart, events).
//! Jobs sharing a SKU (for placing also a customer) go to separate statements.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use events::DomainEvent;
use events::domain::inventory::InventoryAdjusted;
use events::domain::orders::OrderPlaced;
use ingest::outbox::OutboxRows;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use uuid::Uuid;

use crate::batch::{Batcher, JobEvents, Work, column};
use crate::inventory::store as inventory;
use crate::payments::store::PaymentRow;
use crate::shipping::store::{CARRIER, ShipmentRow};

/// The process's batcher of checkouts' opening reads.
pub type Starter = Batcher<Start>;
/// The process's confirmation batcher.
pub type Confirmer = Batcher<Confirm>;
/// The process's batcher of one-line orders' placing.
pub type Placer = Batcher<Place>;

/// One checkout's opening read: the cart of `customer_id` priced with `coupon` (a code as
/// [`crate::pricing::store::coupon_code`] gives it), the order its `idempotency_key`
/// already names, and whether the customer or the card (`fingerprint`) is blocked.
pub struct StartJob {
    pub customer_id: Uuid,
    pub coupon: Option<String>,
    pub idempotency_key: String,
    pub fingerprint: Option<String>,
}

/// Reads the carts of the customers `$1` (coupon codes `$2`) as [`crate::cart::store::load_sql`]
/// does, each row with its job's number (`job`, from 1), the order of each customer's
/// idempotency key `$3` (`existing`) and whether the customer or the card fingerprint `$4`
/// is on the fraud team's blocklist (`blocked`).
static START_MANY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH jobs AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
              AS j(customer_id, coupon, idempotency_key, fingerprint, n))
         {}",
        crate::cart::store::rows_sql(
            &format!(
                "SELECT j.n AS job, j.customer_id AS cart_user, {} AS live,
                        (SELECT id FROM orders.orders o
                         WHERE o.customer_id = j.customer_id
                           AND o.idempotency_key = j.idempotency_key) AS existing,
                        EXISTS (SELECT 1 FROM streams.blocklist
                                WHERE (kind = 'customer' AND value = j.customer_id::text)
                                   OR (kind = 'card' AND value = j.fingerprint)) AS blocked
                 FROM jobs j",
                crate::pricing::store::live_json_sql("j.coupon")
            ),
            "SELECT product_id, quantity, added_at FROM carts.items WHERE user_id = base.cart_user",
            "base.job,",
        )
    )
});

/// Checkouts' opening reads ([`START_MANY_SQL`]): each answers its rows, which
/// [`crate::cart::store::Cart::from_rows`] reads with the job's coupon. Reads share
/// nothing that needs keeping apart.
pub struct Start;

impl Work for Start {
    const NAME: &'static str = "start";
    type Job = StartJob;
    type Out = Vec<PgRow>;

    fn keys(_: &StartJob) -> Vec<String> {
        Vec::new()
    }

    fn sql() -> &'static str {
        START_MANY_SQL.as_str()
    }

    async fn run(
        conn: &mut PgConnection,
        jobs: Vec<StartJob>,
    ) -> Result<Vec<Vec<PgRow>>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(Self::sql()))
            .bind(column(&jobs, |j| j.customer_id))
            .bind(column(&jobs, |j| j.coupon.as_deref()))
            .bind(column(&jobs, |j| j.idempotency_key.as_str()))
            .bind(column(&jobs, |j| j.fingerprint.as_deref()))
            .fetch_all(&mut *conn)
            .await?;
        crate::batch::rows_by_job(rows, jobs.len())
    }
}

/// One order's confirmation: its captured payment, its shipment, its events (the sale's
/// `inventory.adjusted`, keyed by SKU, get the level the statement leaves) and its SKUs.
pub struct ConfirmJob {
    pub payment: PaymentRow,
    pub shipment: ShipmentRow,
    pub events: OutboxRows,
    pub skus: Vec<String>,
}

/// Confirms the orders of `$1` (customers `$2`) with their payments (`$3`..`$7`) and
/// shipments (`$8`..`$14`, carrier `$15`), and the events (`$16`..`$21`, order of each
/// `$22`), each order only when it has no payment yet. Returns the orders confirmed.
static CONFIRM_MANY_SQL: LazyLock<String> = LazyLock::new(|| {
    let adjusted = <InventoryAdjusted as DomainEvent>::TYPE;
    format!(
        "WITH jobs AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::text[],
                                 $6::text[], $7::text[], $8::uuid[], $9::text[], $10::int2[],
                                 $11::int4[], $12::bigint[], $13::text[], $14::text[])
              AS j(order_id, customer_id, payment_id, amount, currency, fingerprint, auth_code,
                   shipment_id, country, zone, weight, cost, ship_currency, tracking)),
         payment AS (
            INSERT INTO payments.payments
              (id, order_id, customer_id, amount_minor, currency, card_fingerprint, status,
               decline_reason, auth_code)
            SELECT payment_id, order_id, customer_id, amount, currency, fingerprint, 'captured',
                   NULL, auth_code FROM jobs
            ON CONFLICT (order_id) DO NOTHING RETURNING id, order_id),
         ok AS (SELECT j.*, p.id AS paid FROM jobs j JOIN payment p ON p.order_id = j.order_id),
         shipment AS (
            INSERT INTO shipping.shipments
              (id, order_id, customer_id, carrier, service_level, country, zone, weight_grams,
               cost_minor, currency, tracking_number)
            SELECT shipment_id, order_id, customer_id, $15, 'standard', country, zone, weight,
                   cost, ship_currency, tracking FROM ok),
         confirmed AS (
            UPDATE orders.orders o SET status = 'confirmed', payment_id = ok.paid,
                shipment_id = ok.shipment_id, updated_at = now()
            FROM ok WHERE o.id = ok.order_id RETURNING o.id),
         history AS (INSERT INTO orders.history (order_id, status) SELECT id, 'confirmed' FROM confirmed),
         emptied AS (DELETE FROM carts.items c USING ok WHERE c.user_id = ok.customer_id),
         {},
         events AS ({})
         SELECT order_id FROM payment",
        inventory::sell_sql("order_id IN (SELECT order_id FROM payment)"),
        OutboxRows::sql_joined(
            16,
            &format!(
                "JOIN unnest($22::uuid[]) WITH ORDINALITY AS eo(order_id, n) ON eo.n = e.n
                 LEFT JOIN sold ON e.event_type = '{adjusted}' AND sold.sku = e.key"
            ),
            "CASE WHEN sold.sku IS NULL THEN e.payload
                  ELSE convert_to(jsonb_set(convert_from(e.payload, 'UTF8')::jsonb,
                                            '{on_hand_after}', to_jsonb(sold.on_hand))::text, 'UTF8') END",
            &format!(
                "eo.order_id IN (SELECT order_id FROM payment)
                 AND (e.event_type <> '{adjusted}' OR sold.sku IS NOT NULL)"
            ),
        )
    )
});

/// Confirmations ([`CONFIRM_MANY_SQL`]): each answers whether its order was confirmed
/// (false: it has a payment already, nothing was written).
pub struct Confirm;

impl Work for Confirm {
    const NAME: &'static str = "confirm";
    type Job = ConfirmJob;
    type Out = bool;

    fn keys(job: &ConfirmJob) -> Vec<String> {
        job.skus.clone()
    }

    fn sql() -> &'static str {
        CONFIRM_MANY_SQL.as_str()
    }

    async fn run(conn: &mut PgConnection, jobs: Vec<ConfirmJob>) -> Result<Vec<bool>, sqlx::Error> {
        let mut events = JobEvents::default();
        let (mut pays, mut ships) = (Vec::new(), Vec::new());
        for job in jobs {
            events.add(job.payment.order_id, job.events);
            pays.push(job.payment);
            ships.push(job.shipment);
        }
        let q = sqlx::query(sqlx::AssertSqlSafe(Self::sql()))
            .bind(column(&pays, |p| p.order_id))
            .bind(column(&pays, |p| p.customer_id))
            .bind(column(&pays, |p| p.id))
            .bind(column(&pays, |p| p.amount_minor))
            .bind(column(&pays, |p| p.currency.as_str()))
            .bind(column(&pays, |p| p.fingerprint.as_str()))
            .bind(column(&pays, |p| p.auth_code.as_deref()))
            .bind(column(&ships, |s| s.id))
            .bind(column(&ships, |s| s.country.as_str()))
            .bind(column(&ships, |s| s.zone))
            .bind(column(&ships, |s| s.weight_grams))
            .bind(column(&ships, |s| s.cost_minor))
            .bind(column(&ships, |s| s.currency.as_str()))
            .bind(column(&ships, |s| s.tracking_number.as_str()))
            .bind(CARRIER);
        let rows = events.bind(q).fetch_all(&mut *conn).await?;
        let confirmed = rows
            .iter()
            .map(|r| r.try_get::<Uuid, _>(0))
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(pays
            .iter()
            .map(|p| confirmed.contains(&p.order_id))
            .collect())
    }
}

/// One one-line order to place, with the hold of its stock and its two events (the order's,
/// then the hold's).
pub struct PlaceJob {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub idempotency_key: String,
    pub currency: String,
    pub subtotal_minor: i64,
    pub shipping_minor: i64,
    pub total_minor: i64,
    pub billing_country: String,
    pub shipping_country: String,
    pub discount_minor: i64,
    pub coupon: Option<String>,
    pub product_id: Uuid,
    pub sku: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub hold_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub events: OutboxRows,
}

/// What placing did: the order was placed (false: its idempotency key names another), its
/// stock held (false: not enough free).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub placed: bool,
    pub held: bool,
}

/// Places the one-line orders of `$1`..`$15` (each only when its customer has no order under
/// its idempotency key) and holds their stock (reservations `$16`, expiring `$17`) where
/// enough is free, with the events (`$18`..`$23`, order of each `$24`): an order's when it
/// was placed, its hold's when the stock was held. Stock rows are locked in SKU order.
static PLACE_MANY_SQL: LazyLock<String> = LazyLock::new(|| {
    let placed = <OrderPlaced as DomainEvent>::TYPE;
    format!(
        "WITH jobs AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
                                 $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::bigint[],
                                 $11::text[], $12::uuid[], $13::text[], $14::int4[], $15::bigint[],
                                 $16::uuid[], $17::timestamptz[])
              AS j(order_id, customer_id, idempotency_key, currency, subtotal, shipping, total,
                   billing, ship_to, discount, coupon, product_id, sku, quantity, price, hold_id,
                   expires_at)),
         placed AS (
            INSERT INTO orders.orders (id, customer_id, idempotency_key, status, currency,
                subtotal_minor, shipping_minor, total_minor, billing_country, shipping_country,
                discount_minor, coupon)
            SELECT order_id, customer_id, idempotency_key, 'placed', currency, subtotal, shipping,
                   total, billing, ship_to, discount, coupon FROM jobs
            ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING id),
         ok AS (SELECT j.* FROM jobs j JOIN placed p ON p.id = j.order_id),
         lines AS (
            INSERT INTO orders.lines (order_id, product_id, sku, quantity, unit_price_minor)
            SELECT order_id, product_id, sku, quantity, price FROM ok),
         history AS (INSERT INTO orders.history (order_id, status) SELECT order_id, 'placed' FROM ok),
         locked AS (
            SELECT sku FROM inventory.stock WHERE sku IN (SELECT sku FROM ok)
            ORDER BY sku COLLATE \"C\" FOR NO KEY UPDATE),
         held AS (
            UPDATE inventory.stock s SET reserved = s.reserved + ok.quantity
            FROM ok JOIN locked USING (sku)
            WHERE s.sku = ok.sku AND s.on_hand - s.reserved >= ok.quantity
            RETURNING ok.order_id, ok.hold_id, ok.sku, ok.quantity, ok.expires_at),
         reservation AS (
            INSERT INTO inventory.reservations (id, order_id, sku, quantity, expires_at)
            SELECT hold_id, order_id, sku, quantity, expires_at FROM held),
         events AS ({})
         SELECT j.order_id,
                EXISTS (SELECT 1 FROM ok WHERE ok.order_id = j.order_id),
                EXISTS (SELECT 1 FROM held WHERE held.order_id = j.order_id)
         FROM jobs j",
        OutboxRows::sql_joined(
            18,
            "JOIN unnest($24::uuid[]) WITH ORDINALITY AS eo(order_id, n) ON eo.n = e.n",
            "e.payload",
            &format!(
                "CASE WHEN e.event_type = '{placed}' THEN eo.order_id IN (SELECT order_id FROM ok)
                      ELSE eo.order_id IN (SELECT order_id FROM held) END"
            ),
        )
    )
});

/// Placings of one-line orders ([`PLACE_MANY_SQL`]).
pub struct Place;

impl Work for Place {
    const NAME: &'static str = "place";
    type Job = PlaceJob;
    type Out = Placed;

    /// The SKU and the customer (two orders of one customer could share an idempotency key).
    fn keys(job: &PlaceJob) -> Vec<String> {
        vec![job.sku.clone(), job.customer_id.to_string()]
    }

    fn sql() -> &'static str {
        PLACE_MANY_SQL.as_str()
    }

    async fn run(conn: &mut PgConnection, jobs: Vec<PlaceJob>) -> Result<Vec<Placed>, sqlx::Error> {
        let mut events = JobEvents::default();
        let mut orders = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            events.add(job.order_id, std::mem::take(&mut job.events));
            orders.push(job);
        }
        let q = sqlx::query(sqlx::AssertSqlSafe(Self::sql()))
            .bind(column(&orders, |o| o.order_id))
            .bind(column(&orders, |o| o.customer_id))
            .bind(column(&orders, |o| o.idempotency_key.as_str()))
            .bind(column(&orders, |o| o.currency.as_str()))
            .bind(column(&orders, |o| o.subtotal_minor))
            .bind(column(&orders, |o| o.shipping_minor))
            .bind(column(&orders, |o| o.total_minor))
            .bind(column(&orders, |o| o.billing_country.as_str()))
            .bind(column(&orders, |o| o.shipping_country.as_str()))
            .bind(column(&orders, |o| o.discount_minor))
            .bind(column(&orders, |o| o.coupon.as_deref()))
            .bind(column(&orders, |o| o.product_id))
            .bind(column(&orders, |o| o.sku.as_str()))
            .bind(column(&orders, |o| o.quantity))
            .bind(column(&orders, |o| o.unit_price_minor))
            .bind(column(&orders, |o| o.hold_id))
            .bind(column(&orders, |o| o.expires_at));
        let rows = events.bind(q).fetch_all(&mut *conn).await?;
        let mut done = HashMap::with_capacity(rows.len());
        for r in &rows {
            let placed = Placed {
                placed: r.try_get(1)?,
                held: r.try_get(2)?,
            };
            done.insert(r.try_get::<Uuid, _>(0)?, placed);
        }
        orders
            .iter()
            .map(|o| {
                done.get(&o.order_id).copied().ok_or_else(|| {
                    sqlx::Error::Protocol("an order of the batch has no answer".into())
                })
            })
            .collect()
    }
}
