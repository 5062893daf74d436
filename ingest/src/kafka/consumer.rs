//! The durable consumer: pulls a batch, routes undecodable records to the DLQ, hands the
//! decoded ones to a sink, and commits offsets only after the sink (and the DLQ) made them
//! durable. A crash anywhere re-delivers the uncommitted batch: at-least-once transport,
//! made exactly-once by sinks that upsert by event id or window key.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use events::{Envelope, TopicNames};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::kafka::config::KafkaConfig;
use crate::kafka::dlq::dlq_headers;
use crate::kafka::error::KafkaError;
use crate::kafka::headers::decode_message;
use crate::kafka::producer::EventProducer;

/// Which group and topics to consume, and how to batch.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub group_id: String,
    /// Full topic names (use [`TopicNames`] to build them).
    pub topics: Vec<String>,
    pub max_batch: usize,
    /// How long a batch waits to fill after its first record.
    pub max_wait: Duration,
    /// Where a group with no committed offset starts.
    pub start_from_earliest: bool,
}

impl ConsumerOptions {
    pub fn new(group_id: impl Into<String>, topics: Vec<String>) -> Self {
        ConsumerOptions {
            group_id: group_id.into(),
            topics,
            max_batch: 500,
            max_wait: Duration::from_millis(100),
            start_from_earliest: true,
        }
    }
}

/// A decoded record with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub envelope: Envelope,
}

/// A sink's failure; the batch is not committed and will be re-delivered.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    pub retryable: bool,
}

/// Where decoded records go. `write` returns only once the batch is durable.
pub trait Sink: Send {
    fn write(&mut self, batch: &[Record]) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub delivered: usize,
    pub dead_lettered: usize,
    /// Committed next offsets per (topic, partition).
    pub committed: BTreeMap<(String, i32), i64>,
}

/// A consumer-group member with manual, post-sink commits and DLQ routing.
pub struct DurableConsumer {
    consumer: StreamConsumer,
    dlq: EventProducer,
    opts: ConsumerOptions,
}

impl DurableConsumer {
    pub fn new(cfg: &KafkaConfig, opts: ConsumerOptions) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = cfg
            .consumer_config()
            .set("group.id", &opts.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                if opts.start_from_earliest {
                    "earliest"
                } else {
                    "latest"
                },
            )
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .map_err(|source| KafkaError::Setup {
                what: "consumer",
                brokers: cfg.brokers.clone(),
                source,
            })?;
        let topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| KafkaError::Consume {
                topics: opts.topics.clone(),
                source,
            })?;
        Ok(DurableConsumer {
            consumer,
            dlq: EventProducer::new(cfg)?,
            opts,
        })
    }

    pub fn options(&self) -> &ConsumerOptions {
        &self.opts
    }

    /// The next message before `until`. librdkafka reports transient conditions (a topic
    /// whose metadata has not propagated yet, a broker restarting) as consume errors and
    /// recovers by itself, so only fatal errors end the consumer; the rest are logged.
    async fn next_message(&self, until: Instant) -> Result<Option<OwnedMessage>, KafkaError> {
        loop {
            match tokio::time::timeout_at(until, self.consumer.recv()).await {
                Err(_) => return Ok(None),
                Ok(Ok(m)) => return Ok(Some(m.detach())),
                Ok(Err(source @ rdkafka::error::KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(KafkaError::Consume {
                        topics: self.opts.topics.clone(),
                        source,
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(group = %self.opts.group_id, error = %e, "transient consume error, continuing");
                    metrics::counter!("shopstream_kafka_consume_errors_total", "group" => self.opts.group_id.clone())
                        .increment(1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Consumes one batch: waits up to `idle` for a first record, then fills the batch for
    /// at most `max_wait`. Returns an empty report when nothing arrived.
    pub async fn poll_batch<S: Sink>(
        &self,
        sink: &mut S,
        idle: Duration,
    ) -> Result<BatchReport, KafkaError> {
        let mut messages = Vec::new();
        if let Some(first) = self.next_message(Instant::now() + idle).await? {
            messages.push(first);
            let deadline = Instant::now() + self.opts.max_wait;
            while messages.len() < self.opts.max_batch {
                match self.next_message(deadline).await? {
                    Some(m) => messages.push(m),
                    None => break,
                }
            }
        }
        self.process(messages, sink).await
    }

    async fn process<S: Sink>(
        &self,
        messages: Vec<OwnedMessage>,
        sink: &mut S,
    ) -> Result<BatchReport, KafkaError> {
        let mut report = BatchReport::default();
        if messages.is_empty() {
            return Ok(report);
        }
        let mut good = Vec::with_capacity(messages.len());
        for m in &messages {
            match decode_message(m) {
                Ok(envelope) => good.push(Record {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    envelope,
                }),
                Err(e) => {
                    let dlq_topic = TopicNames::dlq_of(m.topic());
                    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(),
                        error = %e, %dlq_topic, "undecodable record routed to the DLQ");
                    let headers = dlq_headers(m, &self.opts.group_id, e.kind(), &e.to_string());
                    self.dlq
                        .send_raw(&dlq_topic, m.key(), m.payload(), headers)
                        .await?;
                    metrics::counter!("shopstream_kafka_dead_lettered_total", "topic" => m.topic().to_owned(), "kind" => e.kind())
                        .increment(1);
                    report.dead_lettered += 1;
                }
            }
        }
        if !good.is_empty() {
            sink.write(&good).await.map_err(KafkaError::Sink)?;
        }
        report.delivered = good.len();
        for m in &messages {
            let next = report
                .committed
                .entry((m.topic().to_owned(), m.partition()))
                .or_insert(0);
            *next = (*next).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &report.committed {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|source| KafkaError::Commit {
                    group: self.opts.group_id.clone(),
                    source,
                })?;
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|source| KafkaError::Commit {
                group: self.opts.group_id.clone(),
                source,
            })?;
        metrics::counter!("shopstream_kafka_consumed_total", "group" => self.opts.group_id.clone())
            .increment(messages.len() as u64);
        Ok(report)
    }

    /// Consumes batches until `shutdown` resolves; the batch in hand is finished first.
    pub async fn run<S: Sink>(
        &self,
        sink: &mut S,
        shutdown: impl Future<Output = ()>,
    ) -> Result<BatchReport, KafkaError> {
        use futures::FutureExt;
        let mut total = BatchReport::default();
        tokio::pin!(shutdown);
        // Shutdown is checked between batches only, so a batch is never abandoned after its
        // sink wrote but before its offsets were committed.
        while (&mut shutdown).now_or_never().is_none() {
            let r = self.poll_batch(sink, Duration::from_millis(200)).await?;
            total.delivered += r.delivered;
            total.dead_lettered += r.dead_lettered;
            total.committed.extend(r.committed);
        }
        Ok(total)
    }
}
