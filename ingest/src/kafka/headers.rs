//! CloudEvents envelope <-> rdkafka headers and message, using the pure codec in `events`.

use events::{DecodeError, Envelope};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// The `ce_*` headers of an envelope as rdkafka headers.
pub fn envelope_headers(env: &Envelope) -> OwnedHeaders {
    let headers = env.headers();
    let mut out = OwnedHeaders::new_with_capacity(headers.len());
    for (key, value) in &headers {
        out = out.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    out
}

/// The value of a message's header `name` (the first one), without decoding anything else.
pub fn header_value<'m, M: Message>(msg: &'m M, name: &str) -> Option<&'m [u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// Decodes any Kafka message (borrowed or owned) into an envelope.
pub fn decode_message<M: Message>(msg: &M) -> Result<Envelope, DecodeError> {
    match msg.headers() {
        Some(h) => Envelope::decode(h.iter().map(|h| (h.key, h.value)), msg.payload()),
        None => Envelope::decode(std::iter::empty(), msg.payload()),
    }
}
