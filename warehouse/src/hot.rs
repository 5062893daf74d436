//! The hot tier: the last minutes of every family in memory, read live from Kafka by the
//! process that serves SQL, so an event is queryable a moment after it is produced, before the
//! loader commits it to the warm Delta table.
//!
//! No double counting: the hot reader starts where the warm table ends, and a query takes only
//! the hot rows past the offsets recorded in the warm snapshot it scans (the loader's
//! `shopstream-loader/<topic>/<partition>` versions): each row comes from exactly one tier.
//! Rows older than `retain` are dropped from memory (by then the loader has them).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deltalake::arrow::array::{AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{Int32Type, Int64Type};
use futures::StreamExt;
use ingest::kafka::{KafkaConfig, decode_message};
use rdkafka::message::Message;
use tokio::sync::watch;

use crate::WarehouseError;
use crate::bronze;
use crate::lake::Lake;

/// Hot rows of one family, as batches of bronze rows.
#[derive(Debug, Default)]
pub struct HotFamily {
    pub topic: String,
    batches: VecDeque<(Instant, RecordBatch)>,
}

impl HotFamily {
    /// The rows past `committed` (next offset not in warm, per partition).
    pub fn rows_after(&self, committed: &HashMap<i32, i64>) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for (_, b) in &self.batches {
            let parts = b.column(6).as_primitive::<Int32Type>();
            let offs = b.column(7).as_primitive::<Int64Type>();
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| Some(offs.value(i) > *committed.get(&parts.value(i)).unwrap_or(&-1)))
                .collect();
            if keep.true_count() == 0 {
                continue;
            }
            if let Ok(f) = filter_record_batch(b, &keep) {
                out.push(f);
            }
        }
        out
    }

    /// The Kafka partitions with hot rows.
    pub fn partitions(&self) -> Vec<i32> {
        let mut ps: Vec<i32> = self
            .batches
            .iter()
            .flat_map(|(_, b)| b.column(6).as_primitive::<Int32Type>().values().to_vec())
            .collect();
        ps.sort_unstable();
        ps.dedup();
        ps
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(|(_, b)| b.num_rows()).sum()
    }
}

/// Every family's hot rows, shared with the SQL engine.
#[derive(Debug, Default)]
pub struct HotTier {
    families: HashMap<String, Arc<Mutex<HotFamily>>>,
}

impl HotTier {
    /// The hot rows of a bronze table, if it has a hot tier.
    pub fn family(&self, table: &str) -> Option<Arc<Mutex<HotFamily>>> {
        self.families.get(table).cloned()
    }
}

/// How the hot reader batches and how long it keeps rows.
#[derive(Debug, Clone)]
pub struct HotOptions {
    /// Rows are visible after at most this long.
    pub flush_every: Duration,
    /// Rows stay in memory this long (the loader has committed them well before).
    pub retain: Duration,
}

impl Default for HotOptions {
    fn default() -> Self {
        HotOptions {
            flush_every: Duration::from_millis(100),
            retain: Duration::from_secs(300),
        }
    }
}

/// Starts reading every family from where its warm table ends; returns the tier and the task
/// (which runs until `shutdown`).
pub async fn start(
    kafka: &KafkaConfig,
    lake: &Lake,
    opts: HotOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<
    (
        Arc<HotTier>,
        tokio::task::JoinHandle<Result<u64, WarehouseError>>,
    ),
    WarehouseError,
> {
    let (consumer, warm) =
        bronze::consumer_at_warm_end(kafka, lake, "shopstream-warehouse-hot", 20).await?;
    let mut tier = HotTier::default();
    let mut by_topic: HashMap<String, (String, Arc<Mutex<HotFamily>>)> = HashMap::new();
    for w in warm {
        let table = bronze::table_name(w.topic);
        let family = Arc::new(Mutex::new(HotFamily {
            topic: w.name.clone(),
            batches: VecDeque::new(),
        }));
        tier.families.insert(table.clone(), family.clone());
        by_topic.insert(w.name, (table, family));
    }
    let tier = Arc::new(tier);
    let task = tokio::spawn(async move {
        let mut pending: HashMap<String, bronze::Rows> = HashMap::new();
        let mut total = 0u64;
        let mut last_flush = Instant::now();
        // One stream for the whole run: `recv` makes (and registers a waker for) one per record.
        let mut stream = consumer.stream();
        loop {
            let wait = opts.flush_every.saturating_sub(last_flush.elapsed());
            tokio::select! {
                _ = shutdown.changed() => if *shutdown.borrow() { break },
                m = tokio::time::timeout(wait, stream.next()) => {
                    if let Ok(Some(Ok(msg))) = m
                        && by_topic.contains_key(msg.topic())
                        && let Ok(env) = decode_message(&msg)
                    {
                        let text = msg.payload().and_then(|p| std::str::from_utf8(p).ok()).unwrap_or_default();
                        pending
                            .entry(msg.topic().to_owned())
                            .or_insert_with(|| bronze::Rows::new(msg.topic().to_owned()))
                            .push(&env, msg.partition(), msg.offset(), text);
                    }
                }
            }
            if last_flush.elapsed() >= opts.flush_every {
                for (topic, rows) in pending.iter_mut() {
                    if rows.is_empty() {
                        continue;
                    }
                    let batch = rows.finish()?;
                    total += batch.num_rows() as u64;
                    if let Some((_, family)) = by_topic.get(topic)
                        && let Ok(mut f) = family.lock()
                    {
                        f.batches.push_back((Instant::now(), batch));
                        while f
                            .batches
                            .front()
                            .is_some_and(|(t, _)| t.elapsed() > opts.retain)
                        {
                            f.batches.pop_front();
                        }
                    }
                }
                last_flush = Instant::now();
            }
        }
        Ok(total)
    });
    Ok((tier, task))
}
