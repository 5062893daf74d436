//! The counting consumer of `shopstream up`: proves the live traffic comes back through a
//! consumer group, and reports how much of each event type it saw.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kafka::{Record, Sink, SinkError};

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
