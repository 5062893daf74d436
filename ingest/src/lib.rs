//! Kafka plumbing for every Shopstream component: the idempotent producer, the durable
//! consumer (offsets committed only after the sink is durable), DLQ routing, CloudEvents
//! header mapping and topic administration from the catalogue.
//! The outbox relay, clickstream intake and traffic simulator will live here too.

pub mod db;
pub mod intake;
pub mod kafka;
pub mod outbox;
pub mod simulate;
pub mod smoke;

pub use kafka::{
    BatchReport, ConsumerOptions, Delivery, DurableConsumer, EventProducer, KafkaConfig,
    KafkaError, Record, Sink, SinkError, TopicAdmin, TopicChange, dlq,
};
