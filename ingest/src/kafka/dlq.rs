//! Dead-letter routing: an undecodable record goes to `<topic>.dlq` unchanged (key, value,
//! original headers) plus headers saying why and where it came from, so it can be inspected
//! and replayed. The consumer then moves on.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// Header names added to dead-lettered records.
pub mod header {
    pub const ERROR: &str = "dlq.error";
    pub const ERROR_KIND: &str = "dlq.error.kind";
    pub const ORIGIN_TOPIC: &str = "dlq.origin.topic";
    pub const ORIGIN_PARTITION: &str = "dlq.origin.partition";
    pub const ORIGIN_OFFSET: &str = "dlq.origin.offset";
    pub const CONSUMER_GROUP: &str = "dlq.consumer.group";
}

/// The original headers plus the DLQ ones.
pub fn dlq_headers<M: Message>(msg: &M, group: &str, kind: &str, error: &str) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(h) = msg.headers() {
        for h in h.iter() {
            out = out.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    for (key, value) in [
        (header::ERROR, error),
        (header::ERROR_KIND, kind),
        (header::ORIGIN_TOPIC, msg.topic()),
        (header::ORIGIN_PARTITION, partition.as_str()),
        (header::ORIGIN_OFFSET, offset.as_str()),
        (header::CONSUMER_GROUP, group),
    ] {
        out = out.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    out
}
