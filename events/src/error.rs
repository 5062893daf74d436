//! Errors of the event contract: bad values and undecodable records.
//! Decoding never panics; every failure names what was wrong and where.

/// A value that breaks its type's rule (currency code, SKU, rating, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("invalid currency code {0:?}: expected three upper-case letters (ISO 4217)")]
    Currency(String),
    #[error("invalid SKU {0:?}: expected 3-64 of A-Z, 0-9, '.', '_', '-' starting alphanumeric")]
    Sku(String),
    #[error("invalid country code {0:?}: expected two upper-case letters (ISO 3166-1)")]
    Country(String),
    #[error("invalid rating {0}: expected 1 to 5")]
    Rating(u8),
    #[error("invalid fraud score {0}: expected 0 to 99")]
    FraudScore(u8),
}

/// Why a Kafka record could not be decoded into an [`crate::Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {name} is not valid: {reason}")]
    InvalidHeader { name: &'static str, reason: String },
    #[error("unsupported CloudEvents specversion {0:?} (expected \"1.0\")")]
    UnsupportedSpecVersion(String),
    #[error("unsupported content-type {0:?} (expected application/json)")]
    UnsupportedContentType(String),
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    #[error("record of type {event_type} has no payload")]
    EmptyPayload { event_type: String },
    #[error("payload of {event_type} does not match its schema: {source}")]
    InvalidPayload {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

impl DecodeError {
    /// A short stable label for metrics and DLQ headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::MissingHeader(_) => "missing_header",
            DecodeError::InvalidHeader { .. } => "invalid_header",
            DecodeError::UnsupportedSpecVersion(_) => "unsupported_specversion",
            DecodeError::UnsupportedContentType(_) => "unsupported_content_type",
            DecodeError::UnknownEventType(_) => "unknown_event_type",
            DecodeError::EmptyPayload { .. } => "empty_payload",
            DecodeError::InvalidPayload { .. } => "invalid_payload",
        }
    }
}
