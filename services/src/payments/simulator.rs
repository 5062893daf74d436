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
//!
//! The listed numbers are examples: any Luhn-valid card with the BIN 400000 or 410000 and
//! those last four digits behaves the same, so a card tester's many cards can each decline.

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
        // Test cards: BIN 400000 or 410000, and the last four digits pick the outcome, so
        // that many different cards (as a card tester uses) can decline alike.
        let d = card.digits();
        let code = (d.starts_with("400000") || d.starts_with("410000")).then(|| &d[d.len() - 4..]);
        match code {
            Some("0002") => declined(DeclineReason::DoNotHonor),
            Some("9995") => declined(DeclineReason::InsufficientFunds),
            Some("0069") => declined(DeclineReason::CardExpired),
            Some("0127") => declined(DeclineReason::IncorrectCvc),
            Some("0019") => declined(DeclineReason::StolenCard),
            Some("0119") => Err(GatewayFault::ProcessingError),
            Some("0341") => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use events::Currency;

    async fn outcome(number: &str) -> Result<GatewayOutcome, GatewayFault> {
        let sim = GatewaySimulator::new(Duration::ZERO, Duration::from_millis(1));
        sim.authorize(
            &CardNumber::parse(number).unwrap(),
            Money::new(1_000, Currency::EUR),
        )
        .await
    }

    #[tokio::test]
    async fn test_cards_decline_by_their_last_four_digits() {
        assert!(matches!(
            outcome("4242424242424242").await,
            Ok(GatewayOutcome::Approved { .. })
        ));
        for (number, reason) in [
            ("4000000000000002", DeclineReason::DoNotHonor),
            // Another card of the same test BIN and ending declines alike.
            ("4000001234550002", DeclineReason::DoNotHonor),
            ("4000005555579995", DeclineReason::InsufficientFunds),
            ("4100000000000019", DeclineReason::StolenCard),
        ] {
            assert!(CardNumber::parse(number).is_ok(), "{number} passes Luhn");
            assert_eq!(
                outcome(number).await,
                Ok(GatewayOutcome::Declined(reason)),
                "{number}"
            );
        }
        // The ending alone is not enough: outside the test BINs a card is approved.
        assert!(matches!(
            outcome("5555555555570002").await,
            Ok(GatewayOutcome::Approved { .. })
        ));
        assert_eq!(
            outcome("4000000000000119").await,
            Err(GatewayFault::ProcessingError)
        );
    }
}
