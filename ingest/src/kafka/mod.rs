//! Kafka clients configured the way the architecture requires: idempotent producers with
//! acks=all, manual commits after durable sinks, and `<topic>.dlq` for undecodable records.

mod admin;
mod config;
mod consumer;
pub mod dlq;
mod error;
mod headers;
mod producer;

pub use admin::{TopicAdmin, TopicChange};
pub use config::KafkaConfig;
pub use consumer::{BatchReport, ConsumerOptions, DurableConsumer, Record, Sink, SinkError};
pub use error::KafkaError;
pub use headers::{consumed_header, decode_message, envelope_headers};
pub use producer::{Delivery, EventProducer};
