//! Test helpers: a private topic namespace per test on the real broker.

use std::time::Duration;

use events::{Topic, TopicNames};
use ingest::{KafkaConfig, Record, Sink, SinkError, TopicAdmin};

/// A test's own view of the cluster: a unique topic prefix with the catalogue applied.
pub struct TestKafka {
    pub cfg: KafkaConfig,
    pub names: TopicNames,
}

impl TestKafka {
    pub async fn new() -> TestKafka {
        let mut cfg = KafkaConfig::default();
        if let Ok(b) = std::env::var("SHOPSTREAM_KAFKA_BROKERS") {
            cfg.brokers = b;
        }
        cfg.topic_prefix = format!("it-{}.", uuid::Uuid::now_v7().simple());
        cfg.delivery_timeout_ms = 20_000;
        let names = cfg.topic_names();
        let admin = TopicAdmin::new(&cfg).expect("admin client");
        admin
            .apply(&names.plan())
            .await
            .expect("the local Kafka broker is up (deploy/local/stack.sh up) and topics apply");
        TestKafka { cfg, names }
    }

    pub fn topic(&self, t: Topic) -> String {
        self.names.name(t)
    }

    /// Deletes this test's topics (a failed test leaves them for inspection).
    pub async fn cleanup(self) {
        let names: Vec<String> = self.names.plan().into_iter().map(|p| p.name).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let admin = TopicAdmin::new(&self.cfg).expect("admin client");
        admin.delete(&refs).await.expect("delete test topics");
    }

    pub fn group(&self, name: &str) -> String {
        format!("{}{name}", self.names.prefix())
    }
}

/// A sink that keeps what it got, optionally failing on demand.
#[derive(Default)]
pub struct VecSink {
    pub records: Vec<Record>,
    pub fail_next: bool,
}

impl Sink for VecSink {
    async fn write(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(SinkError {
                message: "disk full (test)".into(),
                retryable: true,
            });
        }
        self.records.extend_from_slice(batch);
        Ok(())
    }
}

/// Polls until `want` records have arrived or 30 s pass.
pub async fn drain(
    consumer: &ingest::DurableConsumer,
    sink: &mut VecSink,
    want: usize,
) -> ingest::BatchReport {
    let mut total = ingest::BatchReport::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sink.records.len() < want && tokio::time::Instant::now() < deadline {
        let r = consumer
            .poll_batch(sink, Duration::from_millis(500))
            .await
            .expect("batch");
        total.delivered += r.delivered;
        total.dead_lettered += r.dead_lettered;
        total.committed.extend(r.committed);
    }
    total
}
