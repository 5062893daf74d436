//! Side tables for enrichment, rebuilt from their topics on every instance (like a Kafka
//! Streams global table): product facts from `catalog`, registration times from `users`. Not checkpointed: the topic is the
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

/// A table keyed by id, folded from one topic's events.
pub struct SideTable<V> {
    consumer: BaseConsumer,
    apply: fn(&mut HashMap<Uuid, V>, Event),
    pub by_id: HashMap<Uuid, V>,
}

/// Product facts from `catalog`.
pub type Products = SideTable<ProductFacts>;

/// When each customer registered (ms since the epoch), from `users`. The topic keeps 30
/// days, so a customer missing here registered longer ago (or before the topic existed).
pub type Customers = SideTable<i64>;

fn apply_product(by_id: &mut HashMap<Uuid, ProductFacts>, event: Event) {
    match event {
        Event::ProductCreated(p) => {
            by_id.insert(
                p.product_id,
                ProductFacts {
                    category: p.category,
                    vendor_id: p.vendor_id,
                    price_minor: p.price.amount_minor,
                },
            );
        }
        Event::ProductUpdated(p) => {
            if let (Some(f), Some(c)) = (by_id.get_mut(&p.product_id), p.category) {
                f.category = c;
            }
        }
        Event::PriceChanged(p) => {
            if let Some(f) = by_id.get_mut(&p.product_id) {
                f.price_minor = p.new_price.amount_minor;
            }
        }
        _ => {}
    }
}

fn apply_customer(by_id: &mut HashMap<Uuid, i64>, event: Event) {
    if let Event::UserRegistered(u) = event {
        by_id.insert(u.user_id, u.registered_at.timestamp_millis());
    }
}

impl SideTable<ProductFacts> {
    /// Reads the catalog topic up to its current end, then follows it with [`SideTable::drain`].
    pub fn load(cfg: &KafkaConfig) -> Result<Products, rdkafka::error::KafkaError> {
        SideTable::read(cfg, Topic::Catalog, "side-table", apply_product)
    }
}

impl SideTable<i64> {
    /// Reads the users topic up to its current end, then follows it with [`SideTable::drain`].
    pub fn load(cfg: &KafkaConfig) -> Result<Customers, rdkafka::error::KafkaError> {
        SideTable::read(cfg, Topic::Users, "customer-table", apply_customer)
    }

    /// Age of the customer's account at `at_ms`, in days; `None` when not in the topic.
    pub fn account_age_days(&self, customer: &Uuid, at_ms: i64) -> Option<i64> {
        self.by_id
            .get(customer)
            .map(|registered| (at_ms - registered).max(0) / 86_400_000)
    }
}

impl<V> SideTable<V> {
    fn read(
        cfg: &KafkaConfig,
        topic: Topic,
        group: &str,
        apply: fn(&mut HashMap<Uuid, V>, Event),
    ) -> Result<SideTable<V>, rdkafka::error::KafkaError> {
        let consumer: BaseConsumer = cfg
            .consumer_config()
            .set(
                "group.id",
                format!("{}shopstream-{group}", cfg.topic_prefix),
            )
            .set("enable.auto.commit", "false")
            .create()?;
        let topic = cfg.topic_names().name(topic);
        // A topic created a moment ago may not have its leaders yet: retry for a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let ends = loop {
            match end_offsets(&consumer, &topic) {
                Ok(ends) => break ends,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(topic, error = %e, "side-table topic not readable yet, retrying");
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
        let mut t = SideTable {
            consumer,
            apply,
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
            if let Ok(env) = decode_message(&m) {
                (self.apply)(&mut self.by_id, env.event);
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
