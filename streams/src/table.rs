//! Side tables for enrichment, rebuilt from their topics on every instance (like a Kafka
//! Streams global table): product facts from `catalog`. Not checkpointed: the topic is the
//! state, read from the beginning at start and followed between batches.

use std::collections::HashMap;
use std::time::Duration;

use events::{Event, Topic};
use ingest::KafkaConfig;
use ingest::kafka::decode_message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

/// What enrichment needs to know about a product.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductFacts {
    pub category: String,
    pub vendor_id: Uuid,
    pub price_minor: i64,
}

pub struct Products {
    consumer: BaseConsumer,
    pub by_id: HashMap<Uuid, ProductFacts>,
}

impl Products {
    /// Reads the catalog topic up to its current end, then follows it with [`Products::drain`].
    pub fn load(cfg: &KafkaConfig) -> Result<Products, rdkafka::error::KafkaError> {
        let consumer: BaseConsumer = cfg
            .client_config()
            .set(
                "group.id",
                format!("{}shopstream-side-table", cfg.topic_prefix),
            )
            .set("enable.auto.commit", "false")
            .create()?;
        let topic = cfg.topic_names().name(Topic::Catalog);
        // A topic created a moment ago may not have its leaders yet: retry for a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let ends = loop {
            match end_offsets(&consumer, &topic) {
                Ok(ends) => break ends,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(topic, error = %e, "catalog topic not readable yet, retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        };
        let parts = ends.len() as i32;
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut t = Products {
            consumer,
            by_id: HashMap::new(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            t.poll(Duration::from_millis(100), 10_000);
            let done = (0..parts).all(|p| {
                let pos = t
                    .consumer
                    .position()
                    .ok()
                    .and_then(|l| match l.find_partition(&topic, p)?.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(0);
                pos >= ends[p as usize]
            });
            if done || std::time::Instant::now() > deadline {
                break;
            }
        }
        Ok(t)
    }

    fn poll(&mut self, first_wait: Duration, max: usize) {
        let mut wait = first_wait;
        for _ in 0..max {
            let Some(Ok(m)) = self.consumer.poll(wait) else {
                return;
            };
            wait = Duration::ZERO;
            let Ok(env) = decode_message(&m) else {
                continue;
            };
            match env.event {
                Event::ProductCreated(p) => {
                    self.by_id.insert(
                        p.product_id,
                        ProductFacts {
                            category: p.category,
                            vendor_id: p.vendor_id,
                            price_minor: p.price.amount_minor,
                        },
                    );
                }
                Event::ProductUpdated(p) => {
                    if let (Some(f), Some(c)) = (self.by_id.get_mut(&p.product_id), p.category) {
                        f.category = c;
                    }
                }
                Event::PriceChanged(p) => {
                    if let Some(f) = self.by_id.get_mut(&p.product_id) {
                        f.price_minor = p.new_price.amount_minor;
                    }
                }
                _ => {}
            }
        }
    }

    /// Applies whatever arrived since the last call, without waiting.
    pub fn drain(&mut self) {
        self.poll(Duration::ZERO, 100_000);
    }
}

/// The high watermark of every partition of `topic`.
fn end_offsets(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<Vec<i64>, rdkafka::error::KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let parts = md
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0) as i32;
    (0..parts)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(_, high)| high)
        })
        .collect()
}
