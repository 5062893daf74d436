//! The smoke flow of `shopstream up` until the simulator exists: a producer that publishes
//! the contract's sample events (fresh ids and times) at a gentle rate, and a counting sink
//! that proves they come back through a consumer group. Honest about what it is: traffic
//! for liveness, not a simulation of shoppers.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use events::{Envelope, samples};

use crate::kafka::{EventProducer, KafkaError, Record, Sink, SinkError};

/// Publishes one sample event every `1/rate` seconds, cycling through every event type,
/// until `shutdown` resolves, counting acknowledged ones in `sent`.
pub async fn produce(
    producer: &EventProducer,
    rate_per_sec: f64,
    sent: &AtomicU64,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaError> {
    let period = Duration::from_secs_f64(1.0 / rate_per_sec.max(0.01));
    let samples = samples();
    let mut tick = tokio::time::interval(period);
    tokio::pin!(shutdown);
    for event in samples.iter().cycle() {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let env = Envelope::new("/shopstream/smoke", event.clone());
        let d = producer.publish(&env).await?;
        tracing::debug!(event_id = %env.id, event_type = env.event_type(), partition = d.partition, offset = d.offset, "smoke event published");
        sent.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Counts consumed events per type (the smoke consumer's sink).
#[derive(Debug, Default)]
pub struct CountingSink {
    pub by_type: BTreeMap<&'static str, u64>,
    /// Shared total, for progress reporting while the consumer runs.
    pub total: Arc<AtomicU64>,
}

impl Sink for CountingSink {
    async fn write(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        for r in batch {
            *self.by_type.entry(r.envelope.event_type()).or_default() += 1;
        }
        self.total.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
