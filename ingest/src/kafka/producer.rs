//! The idempotent producer: `enable.idempotence=true` set explicitly, acks=all,
//! compression, per-key ordering preserved across retries.

use std::time::Duration;

use events::{Envelope, TopicNames};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::kafka::config::KafkaConfig;
use crate::kafka::error::KafkaError;
use crate::kafka::headers::envelope_headers;

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// Publishes envelopes to their catalogue topics (and raw records, for DLQs).
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
    names: TopicNames,
}

impl EventProducer {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let producer = cfg
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("delivery.timeout.ms", cfg.delivery_timeout_ms.to_string())
            .create()
            .map_err(|source| KafkaError::Setup {
                what: "producer",
                brokers: cfg.brokers.clone(),
                source,
            })?;
        Ok(EventProducer {
            producer,
            names: cfg.topic_names(),
        })
    }

    pub fn topic_names(&self) -> &TopicNames {
        &self.names
    }

    /// Publishes to the event's catalogue topic, keyed by the event's key, and waits for
    /// the broker's acknowledgement (acks=all).
    pub async fn publish(&self, env: &Envelope) -> Result<Delivery, KafkaError> {
        let topic = self.names.name(env.topic());
        self.publish_to(&topic, env).await
    }

    /// Publishes to an explicit topic.
    pub async fn publish_to(&self, topic: &str, env: &Envelope) -> Result<Delivery, KafkaError> {
        let key = env.key();
        let payload = env.payload();
        self.send_raw(
            topic,
            Some(key.as_bytes()),
            Some(&payload),
            envelope_headers(env),
        )
        .await
    }

    /// Publishes many envelopes with all of them in flight at once (throughput), keeping
    /// per-partition order, and returns once every one is acknowledged.
    pub async fn publish_all(&self, envs: &[Envelope]) -> Result<Vec<Delivery>, KafkaError> {
        let futures = envs.iter().map(|e| self.publish(e));
        futures::future::join_all(futures)
            .await
            .into_iter()
            .collect()
    }

    /// Sends one record as it is.
    pub async fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<Delivery, KafkaError> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        match self.producer.send(record, Timeout::Never).await {
            Ok(d) => {
                metrics::counter!("shopstream_kafka_produced_total", "topic" => topic.to_owned())
                    .increment(1);
                Ok(Delivery {
                    partition: d.partition,
                    offset: d.offset,
                })
            }
            Err((source, _)) => Err(KafkaError::Produce {
                topic: topic.to_owned(),
                source,
            }),
        }
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .flush(timeout)
            .map_err(|source| KafkaError::Produce {
                topic: "(flush)".into(),
                source,
            })
    }
}
