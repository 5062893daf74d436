//! The checkout saga: place the order and hold its stock, authorize the payment, book the
//! shipment, confirm. Each step that writes is one statement (or one transaction) with its
//! events in the outbox, and every failure is compensated (stock released, payment voided,
//! order cancelled). The confirmation writes the captured payment, the shipment, the sale
//! and the confirmed order together.

use std::sync::LazyLock;
use std::time::Duration;

use events::domain::inventory::ReleaseReason;
use events::domain::orders::{
    CancelReason, CardRef, OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced,
};
use events::{Country, Currency, Envelope, Money, Quantity, Sku};
use ingest::outbox::{OutboxRows, enqueue};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

use crate::app::AppState;
use crate::batch::{Unbatched, Work};
use crate::cart::store::Cart;
use crate::http::{FieldError, Problem};
use crate::inventory::store::{self as inventory, Hold, InventoryError};
use crate::payments::card::CardNumber;
use crate::payments::store::{self as payments, Authorization, NewPayment};
use crate::shipping::store::{self as shipping, NewShipment, ShippingError};

const SOURCE: &str = "/shopstream/orders";
/// How long stock stays reserved for an unfinished checkout.
pub const RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);

/// The order, its lines and history (`$1`..`$15`) for [`PLACE_SQL`] and [`PLACE_AND_HOLD_SQL`].
const PLACED: &str = "placed AS (
        INSERT INTO orders.orders (id, customer_id, idempotency_key, status, currency, subtotal_minor,
            shipping_minor, total_minor, billing_country, shipping_country, discount_minor, coupon)
        VALUES ($1, $2, $3, 'placed', $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING id),
     lines AS (
        INSERT INTO orders.lines (order_id, product_id, sku, quantity, unit_price_minor)
        SELECT placed.id, l.product_id, l.sku, l.quantity, l.price
        FROM placed, unnest($12::uuid[], $13::text[], $14::int[], $15::bigint[])
             AS l(product_id, sku, quantity, price)),
     history AS (INSERT INTO orders.history (order_id, status) SELECT id, 'placed' FROM placed)";

/// Places an order (nothing when its idempotency key has one): counts placed and held (0).
static PLACE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {PLACED}, events AS ({}) SELECT (SELECT count(*) FROM placed), 0::bigint",
        OutboxRows::sql(16, Some("placed"))
    )
});

/// Places a one-line order and holds its stock (`$16`..`$21`) when there is enough; the
/// order's event is written if it was placed, the hold's if the stock was held.
static PLACE_AND_HOLD_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {PLACED}, {}, events AS ({})
         SELECT (SELECT count(*) FROM placed), (SELECT count(*) FROM held)",
        Hold::sql(16, Some("placed")),
        OutboxRows::sql_joined(
            22,
            "",
            "e.payload",
            "CASE WHEN e.n = 1 THEN EXISTS (SELECT 1 FROM placed) ELSE EXISTS (SELECT 1 FROM held) END"
        )
    )
});

/// Confirms an order (`$1` order, `$2` shipment, `$3` customer): records its approved payment
/// captured (`$4`..`$12`), writes its shipment (`$13`..`$22`), sells the held stock, confirms
/// the order and empties the cart, with the events (from `$23`). All of it, or nothing when
/// the order has a payment already. Counts the payments written.
static CONFIRM_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {},
         {},
         confirmed AS (
            UPDATE orders.orders SET status = 'confirmed', payment_id = (SELECT id FROM payment),
                shipment_id = $2, updated_at = now()
            WHERE id = $1 AND EXISTS (SELECT 1 FROM payment) RETURNING id),
         history AS (INSERT INTO orders.history (order_id, status) SELECT id, 'confirmed' FROM confirmed),
         emptied AS (DELETE FROM carts.items WHERE user_id = $3 AND EXISTS (SELECT 1 FROM payment)),
         {},
         events AS ({})
         SELECT count(*) FROM payment",
        NewPayment::sql(4),
        NewShipment::sql(13, "payment"),
        inventory::sell_sql("order_id = $1 AND EXISTS (SELECT 1 FROM payment)"),
        inventory::sale_outbox_sql(23, "payment")
    )
});

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub card_number: String,
    pub billing_country: String,
    pub shipping_country: String,
    pub device_id: Option<String>,
    pub coupon: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLineView {
    pub product_id: Uuid,
    pub sku: String,
    pub quantity: i32,
    pub unit_price: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub lines: Vec<OrderLineView>,
    pub subtotal: Money,
    pub discount: Money,
    pub shipping: Money,
    pub total: Money,
    pub coupon: Option<String>,
    pub payment_id: Option<Uuid>,
    pub shipment_id: Option<Uuid>,
}

/// Who is checking out, from where.
pub struct Buyer {
    pub customer_id: Uuid,
    pub ip: String,
}

pub async fn load_order(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<OrderView>, sqlx::Error> {
    let Some(o) = sqlx::query(
        "SELECT id, customer_id, status, cancel_reason, currency, subtotal_minor, discount_minor, shipping_minor,
                total_minor, coupon, payment_id, shipment_id FROM orders.orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let currency =
        Currency::parse(o.try_get::<String, _>("currency")?.as_str()).unwrap_or(Currency::EUR);
    let money =
        |col: &str| -> Result<Money, sqlx::Error> { Ok(Money::new(o.try_get(col)?, currency)) };
    let lines: Vec<(Uuid, String, i32, i64)> = sqlx::query_as(
        "SELECT product_id, sku, quantity, unit_price_minor FROM orders.lines WHERE order_id = $1 ORDER BY sku",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(OrderView {
        order_id,
        customer_id: o.try_get("customer_id")?,
        status: o.try_get("status")?,
        cancel_reason: o.try_get("cancel_reason")?,
        lines: lines
            .into_iter()
            .map(|(product_id, sku, quantity, price)| OrderLineView {
                product_id,
                sku,
                quantity,
                unit_price: Money::new(price, currency),
            })
            .collect(),
        subtotal: money("subtotal_minor")?,
        discount: money("discount_minor")?,
        shipping: money("shipping_minor")?,
        total: money("total_minor")?,
        coupon: o.try_get("coupon")?,
        payment_id: o.try_get("payment_id")?,
        shipment_id: o.try_get("shipment_id")?,
    }))
}

async fn history(
    conn: &mut PgConnection,
    order_id: Uuid,
    status: &str,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO orders.history (order_id, status, detail) VALUES ($1, $2, $3)")
        .bind(order_id)
        .bind(status)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

async fn cancel(
    app: &AppState,
    order_id: Uuid,
    customer_id: Uuid,
    reason: CancelReason,
    detail: String,
) -> Result<(), Problem> {
    let mut tx = app.pool.begin().await?;
    sqlx::query("UPDATE orders.orders SET status = 'cancelled', cancel_reason = $2, updated_at = now() WHERE id = $1")
        .bind(order_id)
        .bind(crate::http::wire_name(&reason))
        .execute(&mut *tx)
        .await?;
    history(&mut tx, order_id, "cancelled", Some(&detail)).await?;
    let event = OrderCancelled {
        order_id,
        customer_id,
        reason,
        detail: Some(detail),
    };
    enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    tx.commit().await?;
    metrics::counter!("shopstream_checkouts_total", "result" => "cancelled").increment(1);
    Ok(())
}

async fn release_stock(app: &AppState, order_id: Uuid) -> Result<(), Problem> {
    let mut tx = app.pool.begin().await?;
    inventory::release(&mut tx, order_id, ReleaseReason::Compensation)
        .await
        .map_err(Problem::internal)?;
    tx.commit().await?;
    Ok(())
}

/// Runs a checkout of the buyer's cart. Returns the order and whether this call created it
/// (false: the idempotency key named an earlier order, returned as it is).
pub async fn checkout(
    app: &AppState,
    buyer: Buyer,
    key: &str,
    req: CheckoutRequest,
) -> Result<(bool, OrderView), Problem> {
    let customer_id = buyer.customer_id;

    // Validate everything the client sent before anything is written.
    let mut errors = Vec::new();
    let card = CardNumber::parse(&req.card_number)
        .map_err(|m| errors.push(("card_number", m.to_owned())))
        .ok();
    let billing = Country::parse(req.billing_country.clone())
        .map_err(|e| errors.push(("billing_country", e.to_string())))
        .ok();
    let ship_to = Country::parse(req.shipping_country.clone())
        .map_err(|e| errors.push(("shipping_country", e.to_string())))
        .ok();
    // An earlier order under this key is returned as it is (whatever this body says), and the
    // fraud team's blocklist (filled by the fraud processor at the block threshold and by
    // reviewers) refuses a blocked customer or card: asked with the cart's read, one round trip.
    let code = req
        .coupon
        .as_deref()
        .map(crate::pricing::store::coupon_code);
    // The read is shared with the other checkouts starting (crate::orders::batch). A read
    // writes nothing, so when the shared one gave no answer the same statement is run again
    // for this checkout alone.
    let start = || crate::orders::batch::StartJob {
        customer_id,
        coupon: code.clone(),
        idempotency_key: key.to_owned(),
        fingerprint: card.as_ref().map(CardNumber::fingerprint),
    };
    let batched = crate::orders::batch::Starter::submit_to(&app.starter, &app.pool, start()).await;
    let rows = match batched {
        Ok(rows) => rows,
        Err(_) => {
            let mut conn = app.pool.acquire().await?;
            crate::orders::batch::Start::run(&mut conn, vec![start()])
                .await?
                .pop()
                .unwrap_or_default()
        }
    };
    let first = rows
        .first()
        .ok_or_else(|| Problem::internal("the cart's read gave no row"))?;
    let (existing, blocked): (Option<Uuid>, bool) =
        (first.try_get("existing")?, first.try_get("blocked")?);
    if let Some(id) = existing {
        let mut conn = app.pool.acquire().await?;
        let view = load_order(&mut conn, id)
            .await?
            .ok_or_else(|| Problem::internal("order vanished"))?;
        return Ok((false, view));
    }
    let (Some(card), Some(billing), Some(ship_to)) = (card, billing, ship_to) else {
        return Err(Problem::validation(
            errors
                .into_iter()
                .map(|(f, m)| FieldError {
                    field: f.into(),
                    message: m,
                })
                .collect(),
        ));
    };
    if blocked {
        return Err(Problem::forbidden(
            "checkout refused: this account or card is blocked after a fraud review; contact support",
        ));
    }
    let cart = Cart::from_rows(&rows, code)?;
    if cart.lines.is_empty() {
        return Err(Problem::invalid("cart", "the cart is empty"));
    }
    if !cart.unavailable.is_empty() {
        return Err(Problem::conflict(format!(
            "products no longer for sale are in the cart: {:?}",
            cart.unavailable
        )));
    }
    let (Some(subtotal), Some(discount), Some(goods)) = (cart.subtotal, cart.discount, cart.total)
    else {
        return Err(Problem::internal("priced cart without totals"));
    };
    let weight: u32 = cart
        .lines
        .iter()
        .map(|l| l.weight_grams * l.quantity.get())
        .sum();
    let quote = shipping::quote(weight, &ship_to)
        .map_err(|e| Problem::invalid("shipping_country", e.to_string()))?;
    let shipping_cost = Money::new(quote.cost.amount_minor, subtotal.currency);
    let total = goods
        .checked_add(shipping_cost)
        .ok_or_else(|| Problem::internal("overflow"))?;

    // 1. Place the order: the order, its lines, its history and its event in one statement.
    // 2. Hold the stock: a one-line order's in that same statement (atomic alone), shared
    //    with the other one-line orders waiting; more lines' after it in one transaction.
    let order_id = Uuid::now_v7();
    let lines: Vec<OrderLine> = cart
        .lines
        .iter()
        .map(|l| OrderLine {
            product_id: l.product_id,
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price: Money::new(
                l.unit_price.amount_minor - l.unit_discount.amount_minor,
                l.unit_price.currency,
            ),
        })
        .collect();
    let wanted: Vec<(Sku, Quantity)> = cart
        .lines
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect();
    let hold = match wanted.as_slice() {
        [(sku, qty)] => Some(Hold::new(order_id, sku.clone(), *qty, RESERVATION_TTL)),
        _ => None,
    };
    let event = OrderPlaced {
        order_id,
        customer_id,
        lines: lines.clone(),
        subtotal,
        discount,
        shipping: shipping_cost,
        tax: Money::new(0, subtotal.currency),
        total,
        coupon: cart.coupon.clone(),
        card: CardRef {
            fingerprint: card.fingerprint(),
            bin: card.bin(),
            last4: card.last4(),
            country: billing.clone(),
        },
        billing_country: billing.clone(),
        shipping_country: ship_to.clone(),
        ip: buyer.ip.clone(),
        device_id: req.device_id.clone().unwrap_or_else(|| "unknown".into()),
    };
    let place_events = || -> Result<OutboxRows, Problem> {
        let mut events = OutboxRows::default();
        events.push(&Envelope::new(SOURCE, event.clone()))?;
        if let Some(hold) = &hold {
            events.push(&hold.event())?;
        }
        Ok(events)
    };
    // The order alone, in one statement (with the hold of its stock when `hold`): counts
    // placed and held.
    let place_alone = || -> Result<_, Problem> {
        let sql = if hold.is_some() {
            &*PLACE_AND_HOLD_SQL
        } else {
            &*PLACE_SQL
        };
        let query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(order_id)
            .bind(customer_id)
            .bind(key)
            .bind(subtotal.currency.as_str())
            .bind(subtotal.amount_minor)
            .bind(shipping_cost.amount_minor)
            .bind(total.amount_minor)
            .bind(billing.as_str())
            .bind(ship_to.as_str())
            .bind(discount.amount_minor)
            .bind(&cart.coupon)
            .bind(lines.iter().map(|l| l.product_id).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>())
            .bind(
                lines
                    .iter()
                    .map(|l| l.quantity.get() as i32)
                    .collect::<Vec<_>>(),
            )
            .bind(
                lines
                    .iter()
                    .map(|l| l.unit_price.amount_minor)
                    .collect::<Vec<_>>(),
            );
        let query = match &hold {
            Some(hold) => hold.bind(query),
            None => query,
        };
        Ok(place_events()?.bind(query))
    };
    let reserved = match (&hold, lines.as_slice()) {
        (Some(hold), [line]) => {
            // With the other checkouts waiting (crate::orders::batch); alone when the database
            // refused that batch (nothing of it was written).
            let batched = crate::orders::batch::Placer::submit_to(
                &app.placer,
                &app.pool,
                crate::orders::batch::PlaceJob {
                    order_id,
                    customer_id,
                    idempotency_key: key.to_owned(),
                    currency: subtotal.currency.as_str().to_owned(),
                    subtotal_minor: subtotal.amount_minor,
                    shipping_minor: shipping_cost.amount_minor,
                    total_minor: total.amount_minor,
                    billing_country: billing.as_str().to_owned(),
                    shipping_country: ship_to.as_str().to_owned(),
                    discount_minor: discount.amount_minor,
                    coupon: cart.coupon.clone(),
                    product_id: line.product_id,
                    sku: line.sku.as_str().to_owned(),
                    quantity: line.quantity.get() as i32,
                    unit_price_minor: line.unit_price.amount_minor,
                    hold_id: hold.id,
                    expires_at: hold.expires_at,
                    events: place_events()?,
                },
            )
            .await;
            let (placed, held) = match batched {
                Ok(p) => (p.placed, p.held),
                Err(Unbatched::Unknown) => {
                    // The order may have been placed: a retry under the same key finds it.
                    return Err(Problem::internal(format!(
                        "placing order {order_id} has an unknown outcome (the database connection failed); retry with the same Idempotency-Key"
                    )));
                }
                Err(Unbatched::Refused) => {
                    let mut conn = app.pool.acquire().await?;
                    placed_and_held(&place_alone()?.fetch_one(&mut *conn).await?)?
                }
            };
            if !placed {
                // The same key raced in concurrently; that request owns the order.
                return Box::pin(checkout(app, buyer, key, req)).await;
            }
            if held {
                Ok(())
            } else {
                Err(InventoryError::OutOfStock(wanted[0].0.clone()))
            }
        }
        _ => {
            // One connection for the placing and the reservation's transaction.
            let mut conn = app.pool.acquire().await?;
            let (placed, _) = placed_and_held(&place_alone()?.fetch_one(&mut *conn).await?)?;
            if !placed {
                drop(conn);
                return Box::pin(checkout(app, buyer, key, req)).await;
            }
            let mut tx = conn.begin().await?;
            let r = inventory::reserve(&mut tx, order_id, &wanted, RESERVATION_TTL).await;
            match r {
                Ok(()) => tx.commit().await?,
                Err(_) => tx.rollback().await?,
            }
            drop(conn);
            r
        }
    };
    match reserved {
        Ok(()) => {}
        Err(InventoryError::OutOfStock(sku)) => {
            cancel(
                app,
                order_id,
                customer_id,
                CancelReason::OutOfStock,
                format!("not enough stock of {sku}"),
            )
            .await?;
            return finish(app, order_id).await;
        }
        Err(e) => {
            cancel(
                app,
                order_id,
                customer_id,
                CancelReason::OutOfStock,
                "inventory failed".into(),
            )
            .await?;
            return Err(Problem::internal(e));
        }
    }

    // 3. Ask the gateway to authorize the payment. A refusal is recorded at once and
    // compensated; an approval is recorded with the confirmation.
    let payment = NewPayment::authorize(&app.gateway, order_id, customer_id, total, &card).await;
    if !payment.approved() {
        let (reason, detail) = match payment.record(&app.pool).await {
            Ok(Authorization::Declined { reason, .. }) => {
                (CancelReason::PaymentDeclined, format!("{reason:?}"))
            }
            Ok(Authorization::GatewayFailed { reason, .. }) => (
                CancelReason::PaymentGatewayUnavailable,
                format!("{reason:?}"),
            ),
            Ok(Authorization::Authorized { .. }) => (
                CancelReason::PaymentGatewayUnavailable,
                "an earlier authorization of this order stands".into(),
            ),
            Err(e) => (CancelReason::PaymentGatewayUnavailable, e.to_string()),
        };
        release_stock(app, order_id).await?;
        cancel(app, order_id, customer_id, reason, detail).await?;
        return finish(app, order_id).await;
    }
    let payment_id = payment.id;

    // 4. Book the shipment with the carrier; it is written with the confirmation.
    let shipment = match NewShipment::book(order_id, customer_id, &ship_to, weight) {
        Ok(s) => s,
        Err(e) => {
            let detail = match &e {
                ShippingError::Refused(why) => (*why).to_owned(),
                other => other.to_string(),
            };
            // The authorization is recorded, then voided.
            payment.record(&app.pool).await.map_err(Problem::internal)?;
            if let Err(v) = payments::void(&app.pool, &app.gateway, order_id).await {
                // The authorization stays; it lapses at the network. Say so loudly.
                tracing::error!(%order_id, error = %v, "could not void the payment of a failed checkout");
            }
            release_stock(app, order_id).await?;
            cancel(
                app,
                order_id,
                customer_id,
                CancelReason::ShippingUnavailable,
                detail,
            )
            .await?;
            return finish(app, order_id).await;
        }
    };
    let shipment_id = shipment.id;

    // 5. Confirm, in one statement that does all or nothing: the payment is recorded
    // captured, the shipment written, the stock leaves, the order is confirmed and the cart
    // emptied, with every event (the stock's carry the levels the statement leaves).
    // The stock rows are taken in SKU order, as the reservation took them; should the
    // statement still deadlock (with a writer that takes them otherwise), it did nothing
    // and is tried again.
    let confirm_events = || -> Result<OutboxRows, Problem> {
        let mut events = OutboxRows::default();
        events.push(&payment.event())?;
        events.push(&shipment.event())?;
        inventory::push_sale_events(&mut events, order_id, &wanted)?;
        events.push(&Envelope::new(
            SOURCE,
            OrderConfirmed {
                order_id,
                customer_id,
                payment_id,
                shipment_id,
                total,
            },
        ))?;
        Ok(events)
    };
    // With the other checkouts waiting (crate::orders::batch); alone when the database
    // refused that batch (nothing of it was written).
    let batched = crate::orders::batch::Confirmer::submit_to(
        &app.confirmer,
        &app.pool,
        crate::orders::batch::ConfirmJob {
            payment: payment.captured_row(),
            shipment: shipment.row(),
            events: confirm_events()?,
            skus: wanted.iter().map(|(s, _)| s.as_str().to_owned()).collect(),
        },
    )
    .await;
    let mut attempt = 0;
    let confirmed = loop {
        match batched {
            Ok(done) => break Ok(i64::from(done)),
            Err(Unbatched::Unknown) => {
                break Err(sqlx::Error::Protocol(
                    "the shared confirmation's outcome is unknown (the database connection failed)"
                        .into(),
                ));
            }
            Err(Unbatched::Refused) => {}
        }
        attempt += 1;
        let events = confirm_events()?;
        let query = sqlx::query(sqlx::AssertSqlSafe(CONFIRM_SQL.as_str()))
            .bind(order_id)
            .bind(shipment_id)
            .bind(customer_id);
        let query = shipment.bind(payment.bind(query, true));
        match events.fetch_count(query, &app.pool).await {
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("40P01") && attempt < 3 =>
            {
                tracing::warn!(%order_id, attempt, "confirmation deadlocked; trying again");
            }
            other => break other,
        }
    };
    if !matches!(confirmed, Ok(1)) {
        // Nothing of the statement was written. Keep the authorization on file so that it
        // can be voided; the stock is released when the reservation expires.
        let recorded = payment.record(&app.pool).await;
        return Err(Problem::internal(format!(
            "order {order_id} could not be confirmed ({confirmed:?}); its authorization: {recorded:?}"
        )));
    }
    payment.count();
    metrics::counter!("shopstream_checkouts_total", "result" => "confirmed").increment(1);
    // The view from what was just written, without reading it back (the lines in SKU order,
    // as `load_order` gives them).
    let mut lines: Vec<OrderLineView> = lines
        .into_iter()
        .map(|l| OrderLineView {
            product_id: l.product_id,
            sku: l.sku.as_str().to_owned(),
            quantity: l.quantity.get() as i32,
            unit_price: Money::new(l.unit_price.amount_minor, subtotal.currency),
        })
        .collect();
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    let view = OrderView {
        order_id,
        customer_id,
        status: "confirmed".into(),
        cancel_reason: None,
        lines,
        subtotal,
        discount,
        shipping: shipping_cost,
        total,
        coupon: cart.coupon,
        payment_id: Some(payment_id),
        shipment_id: Some(shipment_id),
    };
    Ok((true, view))
}

/// Whether [`PLACE_SQL`] or [`PLACE_AND_HOLD_SQL`] placed the order and held its stock.
fn placed_and_held(row: &sqlx::postgres::PgRow) -> Result<(bool, bool), Problem> {
    Ok((
        row.try_get::<i64, _>(0)? == 1,
        row.try_get::<i64, _>(1)? == 1,
    ))
}

async fn finish(app: &AppState, order_id: Uuid) -> Result<(bool, OrderView), Problem> {
    let mut conn = app.pool.acquire().await?;
    let view = load_order(&mut conn, order_id)
        .await?
        .ok_or_else(|| Problem::internal("order vanished"))?;
    Ok((true, view))
}
