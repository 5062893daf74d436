//! Circuit breaker around the payment gateway, with the seed's numbers: open after 5
//! consecutive gateway faults, try again (half-open) after 30 s, close after 2 successes.
//! Declines are answers, not faults: they never open the circuit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed { failures: u32 },
    Open { since: Instant },
    HalfOpen { successes: u32 },
}

pub struct CircuitBreaker {
    open_after: u32,
    half_open_after: Duration,
    close_after: u32,
    state: Mutex<BreakerState>,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new(5, Duration::from_secs(30), 2)
    }
}

impl CircuitBreaker {
    pub fn new(open_after: u32, half_open_after: Duration, close_after: u32) -> Self {
        CircuitBreaker {
            open_after,
            half_open_after,
            close_after,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    pub fn state(&self) -> BreakerState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go through now (an open circuit turns half-open when due).
    pub fn allow(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *s {
            BreakerState::Open { since } if since.elapsed() >= self.half_open_after => {
                *s = BreakerState::HalfOpen { successes: 0 };
                true
            }
            BreakerState::Open { .. } => false,
            _ => true,
        }
    }

    pub fn record_success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = match *s {
            BreakerState::HalfOpen { successes } if successes + 1 >= self.close_after => {
                BreakerState::Closed { failures: 0 }
            }
            BreakerState::HalfOpen { successes } => BreakerState::HalfOpen {
                successes: successes + 1,
            },
            _ => BreakerState::Closed { failures: 0 },
        };
    }

    pub fn record_failure(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = match *s {
            BreakerState::Closed { failures } if failures + 1 < self.open_after => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            _ => {
                tracing::warn!("payment gateway circuit opened");
                BreakerState::Open {
                    since: Instant::now(),
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_five_faults_half_opens_then_closes_after_two_successes() {
        let b = CircuitBreaker::new(5, Duration::from_millis(50), 2);
        for _ in 0..4 {
            assert!(b.allow());
            b.record_failure();
        }
        assert!(matches!(b.state(), BreakerState::Closed { failures: 4 }));
        b.record_failure();
        assert!(!b.allow(), "open after 5");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow(), "half-open after the wait");
        b.record_success();
        assert!(matches!(b.state(), BreakerState::HalfOpen { successes: 1 }));
        b.record_success();
        assert!(matches!(b.state(), BreakerState::Closed { failures: 0 }));
        // A fault while half-open opens it again at once.
        for _ in 0..5 {
            b.record_failure();
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow());
        b.record_failure();
        assert!(!b.allow());
    }
}
