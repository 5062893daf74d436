//! Live mode: the simulator starting now and publishing each event at its own event time,
//! so the platform has gentle, realistic traffic while it runs (`shopstream up`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use futures::FutureExt;

use crate::kafka::{EventProducer, KafkaError};
use crate::simulate::traffic::{Generator, SimConfig};

/// Publishes until `shutdown` resolves, counting acknowledged events in `sent`. The start is
/// now and, unless the caller fixed one, the seed comes from the clock, so a restart does
/// not repeat earlier event ids.
pub async fn run_live(
    producer: &EventProducer,
    mut sim: SimConfig,
    sent: &AtomicU64,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaError> {
    sim.start = Utc::now();
    let mut generator = Generator::new(sim).peekable();
    tokio::pin!(shutdown);
    loop {
        // Everything already due goes out together (the catalog at start, bursts later).
        let now = Utc::now();
        let mut due = Vec::new();
        while due.len() < 1_000
            && let Some(env) = generator.next_if(|e| e.time <= now)
        {
            due.push(env);
        }
        if !due.is_empty() {
            producer.publish_all(&due).await?;
            sent.fetch_add(due.len() as u64, Ordering::Relaxed);
            if (&mut shutdown).now_or_never().is_some() {
                break;
            }
            continue;
        }
        let next = generator.peek().map(|e| e.time).unwrap_or(now);
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    Ok(())
}
