//! Payment records and their transitions. One payment per order: calling `authorize` again
//! for an order returns the first outcome without charging twice.

use events::domain::payments::{DeclineReason, PaymentAuthorized, PaymentFailed, PaymentRefunded};
use events::{Envelope, Money};
use ingest::outbox::{OutboxError, OutboxRows, enqueue};
use sqlx::PgPool;
use uuid::Uuid;

use crate::payments::breaker::CircuitBreaker;
use crate::payments::card::CardNumber;
use crate::payments::simulator::{GatewayFault, GatewayOutcome, GatewaySimulator};

const SOURCE: &str = "/shopstream/payments";
pub const GATEWAY: &str = "simulator";

/// The simulator behind its circuit breaker.
pub struct Gateway {
    pub simulator: GatewaySimulator,
    pub breaker: CircuitBreaker,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Authorized {
        payment_id: Uuid,
    },
    Declined {
        payment_id: Uuid,
        reason: DeclineReason,
    },
    /// The gateway failed or the circuit is open; nothing was charged.
    GatewayFailed {
        payment_id: Uuid,
        reason: DeclineReason,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("no payment for order {0}")]
    NotFound(Uuid),
    #[error("payment of order {order} is {status}; cannot {action}")]
    WrongState {
        order: Uuid,
        status: String,
        action: &'static str,
    },
    #[error(transparent)]
    Gateway(#[from] GatewayFault),
}

async fn existing(pool: &PgPool, order_id: Uuid) -> Result<Option<Authorization>, PaymentError> {
    let row: Option<(Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT id, status, decline_reason FROM payments.payments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(payment_id, status, reason)| {
        let reason: Option<DeclineReason> =
            reason.and_then(|r| serde_json::from_value(serde_json::Value::String(r)).ok());
        match (status.as_str(), reason) {
            (
                "failed",
                Some(
                    r @ (DeclineReason::GatewayTimeout
                    | DeclineReason::GatewayUnavailable
                    | DeclineReason::ProcessingError),
                ),
            ) => Authorization::GatewayFailed {
                payment_id,
                reason: r,
            },
            ("failed", r) => Authorization::Declined {
                payment_id,
                reason: r.unwrap_or(DeclineReason::DoNotHonor),
            },
            _ => Authorization::Authorized { payment_id },
        }
    }))
}

/// Authorizes `amount` on `card` for an order, once. `placed_now` says the caller placed the
/// order in this very call (the checkout saga), so no payment of it can exist yet and the
/// look-up of an earlier one is skipped; the record's unique order id still keeps one.
pub async fn authorize(
    pool: &PgPool,
    gateway: &Gateway,
    order_id: Uuid,
    customer_id: Uuid,
    placed_now: bool,
    amount: Money,
    card: &CardNumber,
) -> Result<Authorization, PaymentError> {
    if !placed_now && let Some(done) = existing(pool, order_id).await? {
        return Ok(done);
    }
    let outcome = if gateway.breaker.allow() {
        let r = gateway.simulator.authorize(card, amount).await;
        match &r {
            Err(_) => gateway.breaker.record_failure(),
            Ok(_) => gateway.breaker.record_success(),
        }
        r
    } else {
        Err(GatewayFault::Unavailable)
    };
    let payment_id = Uuid::now_v7();
    let fingerprint = card.fingerprint();
    let (status, reason, auth_code, result) = match outcome {
        Ok(GatewayOutcome::Approved { auth_code }) => (
            "authorized",
            None,
            Some(auth_code),
            Authorization::Authorized { payment_id },
        ),
        Ok(GatewayOutcome::Declined(r)) => (
            "failed",
            Some(r),
            None,
            Authorization::Declined {
                payment_id,
                reason: r,
            },
        ),
        Err(f) => (
            "failed",
            Some(f.reason()),
            None,
            Authorization::GatewayFailed {
                payment_id,
                reason: f.reason(),
            },
        ),
    };
    let env = match (&auth_code, reason) {
        (Some(code), _) => Envelope::new(
            SOURCE,
            PaymentAuthorized {
                payment_id,
                order_id,
                customer_id,
                amount,
                gateway: GATEWAY.into(),
                card_fingerprint: fingerprint.clone(),
                auth_code: code.clone(),
            },
        ),
        (None, r) => Envelope::new(
            SOURCE,
            PaymentFailed {
                payment_id,
                order_id,
                customer_id,
                amount,
                gateway: GATEWAY.into(),
                card_fingerprint: fingerprint.clone(),
                reason: r.unwrap_or(DeclineReason::ProcessingError),
            },
        ),
    };
    let mut events = OutboxRows::default();
    events.push(&env)?;
    // The payment and its event in one statement (atomic without a transaction).
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH payment AS (
            INSERT INTO payments.payments
              (id, order_id, customer_id, amount_minor, currency, card_fingerprint, status, decline_reason, auth_code)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (order_id) DO NOTHING RETURNING id),
         events AS ({})
         SELECT count(*) FROM payment",
        OutboxRows::sql(10, Some("payment"))
    )))
    .bind(payment_id)
    .bind(order_id)
    .bind(customer_id)
    .bind(amount.amount_minor)
    .bind(amount.currency.as_str())
    .bind(&fingerprint)
    .bind(status)
    .bind(reason.as_ref().map(crate::http::wire_name))
    .bind(&auth_code);
    let inserted: i64 = events.fetch_count(query, pool).await?;
    if inserted == 0 {
        // A concurrent retry of the same order won the race; its outcome stands.
        return existing(pool, order_id)
            .await?
            .ok_or(PaymentError::NotFound(order_id));
    }
    metrics::counter!("shopstream_payments_total", "status" => status).increment(1);
    Ok(result)
}

async fn reverse(
    pool: &PgPool,
    gateway: &Gateway,
    order_id: Uuid,
    from: &'static str,
    to: &'static str,
    reason: &str,
) -> Result<(), PaymentError> {
    gateway.simulator.reverse().await?;
    let mut tx = pool.begin().await?;
    let row: Option<(Uuid, Uuid, i64, String)> = sqlx::query_as(
        "UPDATE payments.payments SET status = $3, updated_at = now(),
           refunded_minor = CASE WHEN $3 = 'refunded' THEN amount_minor ELSE refunded_minor END
         WHERE order_id = $1 AND status = $2
         RETURNING id, customer_id, amount_minor, currency",
    )
    .bind(order_id)
    .bind(from)
    .bind(to)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((payment_id, customer_id, amount, currency)) = row else {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM payments.payments WHERE order_id = $1")
                .bind(order_id)
                .fetch_optional(pool)
                .await?;
        return match status {
            None => Err(PaymentError::NotFound(order_id)),
            Some(s) if s == to => Ok(()), // already done: idempotent
            Some(status) => Err(PaymentError::WrongState {
                order: order_id,
                status,
                action: to,
            }),
        };
    };
    let currency = events::Currency::parse(&currency).unwrap_or(events::Currency::EUR);
    let event = PaymentRefunded {
        payment_id,
        order_id,
        customer_id,
        amount: Money::new(amount, currency),
        reason: reason.into(),
    };
    enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    tx.commit().await?;
    Ok(())
}

/// Releases an authorization that will not be captured (a compensation).
pub async fn void(pool: &PgPool, gateway: &Gateway, order_id: Uuid) -> Result<(), PaymentError> {
    reverse(pool, gateway, order_id, "authorized", "voided", "void").await
}

/// Refunds a captured payment in full.
pub async fn refund(
    pool: &PgPool,
    gateway: &Gateway,
    order_id: Uuid,
    reason: &str,
) -> Result<(), PaymentError> {
    reverse(pool, gateway, order_id, "captured", "refunded", reason).await
}
