//! Direct mode: the generator's events straight into Kafka, bypassing HTTP, as fast as the
//! broker takes them (for stream and warehouse benchmarks). Uses a threaded producer with
//! large batches; idempotence and acks=all as everywhere.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::kafka::{KafkaConfig, KafkaError, envelope_headers};
use crate::simulate::traffic::{Generator, SimConfig};

#[derive(Default)]
struct Counts {
    failed: AtomicU64,
}

impl ClientContext for Counts {}

impl ProducerContext for Counts {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a direct run did.
#[derive(Debug, Clone, Default)]
pub struct DirectReport {
    pub events: u64,
    pub failed: u64,
    pub labels: usize,
    pub elapsed: Duration,
    pub by_type: BTreeMap<&'static str, u64>,
    /// Browsing sessions started.
    pub sessions: u64,
    /// Confirmed orders and their revenue in minor units, per currency.
    pub orders: u64,
    pub revenue_minor: BTreeMap<String, i64>,
    /// Injected fraud cases and anomalies (ended within the run).
    pub fraud_cases: usize,
    pub anomalies: usize,
}

impl DirectReport {
    pub fn per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Produces `events` simulated events, writes the ground truth (fraud and anomalies) as
/// JSON Lines to `labels`,
/// and calls `progress` with the count so far every 10,000 events.
pub fn run_direct(
    kafka: &KafkaConfig,
    sim: SimConfig,
    events: u64,
    labels: Option<&Path>,
    mut progress: impl FnMut(u64),
) -> Result<DirectReport, KafkaError> {
    let setup = |source| KafkaError::Setup {
        what: "simulator producer",
        brokers: kafka.brokers.clone(),
        source,
    };
    let producer: ThreadedProducer<Counts> = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &kafka.compression)
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Counts::default())
        .map_err(setup)?;
    let names = kafka.topic_names();
    let topics: BTreeMap<_, _> = events::Topic::ALL
        .iter()
        .map(|t| (*t, names.name(*t)))
        .collect();
    let mut generator = Generator::new(sim);
    let mut report = DirectReport::default();
    let start = Instant::now();
    // Sessions are short: remembering the recent ones is enough to count starts.
    let mut sessions_seen = std::collections::HashSet::new();
    for env in generator.by_ref().take(events as usize) {
        let topic = &topics[&env.topic()];
        let key = env.key();
        let payload = env.payload();
        let mut record = BaseRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(envelope_headers(&env));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(KafkaError::Produce {
                        topic: topic.clone(),
                        source,
                    });
                }
            }
        }
        *report.by_type.entry(env.event_type()).or_default() += 1;
        match &env.event {
            events::Event::ProductViewed(v) if sessions_seen.insert(v.session_id) => {
                report.sessions += 1;
            }
            events::Event::OrderConfirmed(o) => {
                report.orders += 1;
                *report
                    .revenue_minor
                    .entry(o.total.currency.to_string())
                    .or_default() += o.total.amount_minor;
            }
            _ => {}
        }
        report.events += 1;
        if report.events.is_multiple_of(10_000) {
            progress(report.events);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|source| KafkaError::Produce {
            topic: "(flush)".into(),
            source,
        })?;
    report.elapsed = start.elapsed();
    report.failed = producer.context().failed.load(Ordering::Relaxed);
    let labels_found = generator.take_labels();
    report.labels = labels_found.len();
    report.fraud_cases = labels_found
        .iter()
        .filter(|l| matches!(l, crate::simulate::GroundTruth::Fraud(_)))
        .count();
    report.anomalies = report.labels - report.fraud_cases;
    if let Some(path) = labels {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| {
            KafkaError::Admin {
                operation: "write labels",
                topic: path.display().to_string(),
                reason: e.to_string(),
            }
        })?);
        for l in &labels_found {
            let line = serde_json::to_string(l).unwrap_or_default();
            writeln!(out, "{line}").map_err(|e| KafkaError::Admin {
                operation: "write labels",
                topic: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(report)
}
