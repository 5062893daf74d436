//! The payment-gateway **simulator**: stands in for a card network, which cannot be reached
//! from here. Realistic behaviour and failure modes: test card numbers that decline for
//! given reasons, configurable latency, calls that time out, and outage windows during which
//! every call fails (for anomaly and circuit-breaker drills).
//!
//! | card number         | outcome                         |
//! |---------------------|---------------------------------|
//! | 4242 4242 4242 4242 | approved (any other valid card too) |
//! | 4000 0000 0000 0002 | declined: do_not_honor          |
//! | 4000 0000 0000 9995 | declined: insufficient_funds    |
//! | 4000 0000 0000 0069 | declined: card_expired          |
//! | 4000 0000 0000 0127 | declined: incorrect_cvc         |
//! | 4100 0000 0000 0019 | declined: stolen_card           |
//! | 4000 0000 0000 0119 | gateway error: processing_error |
//! | 4000 0000 0000 0341 | gateway timeout                 |

use std::sync::Mutex;
use std::time::{Duration, Instant};

use events::Money;
use events::domain::payments::DeclineReason;
use rand::Rng;

use crate::payments::card::CardNumber;

/// What the gateway answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    Approved { auth_code: String },
    Declined(DeclineReason),
}

/// The gateway itself failed: the payment's fate is unknown to the network's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GatewayFault {
    #[error("payment gateway timed out")]
    Timeout,
    #[error("payment gateway unavailable")]
    Unavailable,
    #[error("payment gateway processing error")]
    ProcessingError,
}

impl GatewayFault {
    pub fn reason(self) -> DeclineReason {
        match self {
            GatewayFault::Timeout => DeclineReason::GatewayTimeout,
            GatewayFault::Unavailable => DeclineReason::GatewayUnavailable,
            GatewayFault::ProcessingError => DeclineReason::ProcessingError,
        }
    }
}

pub struct GatewaySimulator {
    /// Added to every call.
    pub latency: Duration,
    /// How long a "timeout" card hangs before failing.
    pub timeout: Duration,
    outage_until: Mutex<Option<Instant>>,
}

impl GatewaySimulator {
    pub fn new(latency: Duration, timeout: Duration) -> Self {
        GatewaySimulator {
            latency,
            timeout,
            outage_until: Mutex::new(None),
        }
    }

    /// Every call fails as unavailable for `length` from now.
    pub fn start_outage(&self, length: Duration) {
        *self.outage_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + length);
    }

    fn in_outage(&self) -> bool {
        self.outage_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }

    pub async fn authorize(
        &self,
        card: &CardNumber,
        amount: Money,
    ) -> Result<GatewayOutcome, GatewayFault> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.in_outage() {
            return Err(GatewayFault::Unavailable);
        }
        let declined = |r| Ok(GatewayOutcome::Declined(r));
        match card.digits() {
            "4000000000000002" => declined(DeclineReason::DoNotHonor),
            "4000000000009995" => declined(DeclineReason::InsufficientFunds),
            "4000000000000069" => declined(DeclineReason::CardExpired),
            "4000000000000127" => declined(DeclineReason::IncorrectCvc),
            "4100000000000019" => declined(DeclineReason::StolenCard),
            "4000000000000119" => Err(GatewayFault::ProcessingError),
            "4000000000000341" => {
                tokio::time::sleep(self.timeout).await;
                Err(GatewayFault::Timeout)
            }
            _ if amount.amount_minor <= 0 => declined(DeclineReason::DoNotHonor),
            _ => {
                let code: u32 = rand::rng().random_range(100_000..1_000_000);
                Ok(GatewayOutcome::Approved {
                    auth_code: format!("A{code}"),
                })
            }
        }
    }

    /// Voids and refunds succeed unless the gateway is in an outage.
    pub async fn reverse(&self) -> Result<(), GatewayFault> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.in_outage() {
            Err(GatewayFault::Unavailable)
        } else {
            Ok(())
        }
    }
}
