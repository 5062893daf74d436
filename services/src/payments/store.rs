//! Payment records and their transitions. One payment per order: recording a second one
//! for an order ([`NewPayment::record`]) returns the first outcome instead.

use std::sync::LazyLock;

use events::domain::payments::{DeclineReason, PaymentAuthorized, PaymentFailed, PaymentRefunded};
use events::{Envelope, Money};
use ingest::outbox::{OutboxError, OutboxRows, enqueue};
use sqlx::postgres::PgArguments;
use sqlx::{PgPool, Postgres};
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

/// An approved payment's row, written captured.
pub struct PaymentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub fingerprint: String,
    pub auth_code: Option<String>,
}

/// The gateway's answer for an order's payment, not yet recorded: the payment's row and
/// event, written alone ([`NewPayment::record`]) or as part of a caller's statement (the
/// saga records an approved payment with the order's confirmation).
pub struct NewPayment {
    pub id: Uuid,
    order_id: Uuid,
    customer_id: Uuid,
    amount: Money,
    fingerprint: String,
    outcome: Result<String, DeclineReason>,
}

impl NewPayment {
    /// Asks the gateway, behind its circuit breaker, to authorize `amount` on `card`.
    pub async fn authorize(
        gateway: &Gateway,
        order_id: Uuid,
        customer_id: Uuid,
        amount: Money,
        card: &CardNumber,
    ) -> NewPayment {
        let answer = if gateway.breaker.allow() {
            let r = gateway.simulator.authorize(card, amount).await;
            match &r {
                Err(_) => gateway.breaker.record_failure(),
                Ok(_) => gateway.breaker.record_success(),
            }
            r
        } else {
            Err(GatewayFault::Unavailable)
        };
        NewPayment {
            id: Uuid::now_v7(),
            order_id,
            customer_id,
            amount,
            fingerprint: card.fingerprint(),
            outcome: match answer {
                Ok(GatewayOutcome::Approved { auth_code }) => Ok(auth_code),
                Ok(GatewayOutcome::Declined(r)) => Err(r),
                Err(f) => Err(f.reason()),
            },
        }
    }

    pub fn approved(&self) -> bool {
        self.outcome.is_ok()
    }

    /// Counts the payment by the gateway's answer (`authorized` or `failed`) once it is
    /// written, by [`NewPayment::record`] or by the caller's statement.
    pub fn count(&self) {
        metrics::counter!("shopstream_payments_total", "status" => self.status(false)).increment(1);
    }

    /// The row's status: `failed`, `authorized`, or `captured` when the caller captures an
    /// approved payment in the statement that writes it.
    fn status(&self, captured: bool) -> &'static str {
        match (&self.outcome, captured) {
            (Err(_), _) => "failed",
            (Ok(_), false) => "authorized",
            (Ok(_), true) => "captured",
        }
    }

    pub fn authorization(&self) -> Authorization {
        let payment_id = self.id;
        match &self.outcome {
            Ok(_) => Authorization::Authorized { payment_id },
            Err(
                reason @ (DeclineReason::GatewayTimeout
                | DeclineReason::GatewayUnavailable
                | DeclineReason::ProcessingError),
            ) => Authorization::GatewayFailed {
                payment_id,
                reason: *reason,
            },
            Err(reason) => Authorization::Declined {
                payment_id,
                reason: *reason,
            },
        }
    }

    pub fn event(&self) -> Envelope {
        match &self.outcome {
            Ok(code) => Envelope::new(
                SOURCE,
                PaymentAuthorized {
                    payment_id: self.id,
                    order_id: self.order_id,
                    customer_id: self.customer_id,
                    amount: self.amount,
                    gateway: GATEWAY.into(),
                    card_fingerprint: self.fingerprint.clone(),
                    auth_code: code.clone(),
                },
            ),
            Err(reason) => Envelope::new(
                SOURCE,
                PaymentFailed {
                    payment_id: self.id,
                    order_id: self.order_id,
                    customer_id: self.customer_id,
                    amount: self.amount,
                    gateway: GATEWAY.into(),
                    card_fingerprint: self.fingerprint.clone(),
                    reason: *reason,
                },
            ),
        }
    }

    /// The CTE `payment` inserting the row (none when the order has a payment already), from
    /// the parameters `$first`..`$first+8` (bind them with [`NewPayment::bind`]).
    pub fn sql(first: usize) -> String {
        let p: Vec<String> = (first..first + 9).map(|i| format!("${i}")).collect();
        format!(
            "payment AS (
                INSERT INTO payments.payments
                  (id, order_id, customer_id, amount_minor, currency, card_fingerprint, status,
                   decline_reason, auth_code)
                VALUES ({}) ON CONFLICT (order_id) DO NOTHING RETURNING id)",
            p.join(", ")
        )
    }

    /// The row [`NewPayment::bind`] writes, captured, as values (for statements that write
    /// many payments from arrays).
    pub fn captured_row(&self) -> PaymentRow {
        PaymentRow {
            id: self.id,
            order_id: self.order_id,
            customer_id: self.customer_id,
            amount_minor: self.amount.amount_minor,
            currency: self.amount.currency.as_str().to_owned(),
            fingerprint: self.fingerprint.clone(),
            auth_code: self.outcome.as_ref().ok().cloned(),
        }
    }

    /// Binds the nine parameters of [`NewPayment::sql`]. `captured`: the caller captures an
    /// approved payment in the same statement, so it is written captured.
    pub fn bind<'q>(
        &self,
        q: sqlx::query::Query<'q, Postgres, PgArguments>,
        captured: bool,
    ) -> sqlx::query::Query<'q, Postgres, PgArguments> {
        let (reason, code) = match &self.outcome {
            Ok(code) => (None, Some(code.clone())),
            Err(r) => (Some(crate::http::wire_name(r)), None),
        };
        let status = self.status(captured);
        q.bind(self.id)
            .bind(self.order_id)
            .bind(self.customer_id)
            .bind(self.amount.amount_minor)
            .bind(self.amount.currency.as_str())
            .bind(self.fingerprint.clone())
            .bind(status)
            .bind(reason)
            .bind(code)
    }

    /// Writes the payment and its event in one statement (atomic without a transaction).
    pub async fn record(self, pool: &PgPool) -> Result<Authorization, PaymentError> {
        let mut events = OutboxRows::default();
        events.push(&self.event())?;
        let query = sqlx::query(sqlx::AssertSqlSafe(RECORD_SQL.as_str()));
        let inserted: i64 = events.fetch_count(self.bind(query, false), pool).await?;
        if inserted == 0 {
            // A concurrent retry of the same order won the race; its outcome stands.
            return existing(pool, self.order_id)
                .await?
                .ok_or(PaymentError::NotFound(self.order_id));
        }
        self.count();
        Ok(self.authorization())
    }
}

static RECORD_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {}, events AS ({}) SELECT count(*) FROM payment",
        NewPayment::sql(1),
        OutboxRows::sql(10, Some("payment"))
    )
});

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
