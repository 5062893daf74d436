//! CloudEvents envelope <-> rdkafka headers and message, using the pure codec in `events`.

use std::ffi::CStr;

use events::{DecodeError, Envelope};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

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

/// Decodes any Kafka message (borrowed or owned) into an envelope.
pub fn decode_message<M: Message>(msg: &M) -> Result<Envelope, DecodeError> {
    match msg.headers() {
        Some(h) => Envelope::decode(h.iter().map(|h| (h.key, h.value)), msg.payload()),
        None => Envelope::decode(std::iter::empty(), msg.payload()),
    }
}

/// The value of a consumed message's header `name` (the last one, as [`decode_message`]
/// takes it), found by librdkafka in one call: walking the headers from Rust makes an FFI
/// call, a `strlen` and a UTF-8 check of the name for each header before it.
pub fn consumed_header<'m>(msg: &'m BorrowedMessage<'_>, name: &CStr) -> Option<&'m [u8]> {
    use rdkafka::bindings as rd;
    let no_error = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
    let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    let mut value: *const std::ffi::c_void = std::ptr::null();
    let mut size = 0usize;
    // SAFETY: `msg.ptr()` is a live message for 'm; the headers and the value librdkafka
    // points to are owned by the message and freed with it, so they outlive the borrow.
    unsafe {
        if rd::rd_kafka_message_headers(msg.ptr(), &mut headers) != no_error
            || rd::rd_kafka_header_get_last(headers, name.as_ptr(), &mut value, &mut size)
                != no_error
            || value.is_null()
        {
            return None;
        }
        Some(std::slice::from_raw_parts(value.cast::<u8>(), size))
    }
}
