//! The CloudEvents 1.0 envelope in Kafka binary mode: attributes travel as `ce_*` headers,
//! the value is the JSON payload. This module maps envelope <-> (headers, payload) with no
//! Kafka client types, so `ingest` owns the broker and this stays a pure codec.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::error::DecodeError;
use crate::event::Event;
use crate::topics::Topic;

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE: &str = "application/json";

pub mod header {
    pub const ID: &str = "ce_id";
    pub const TYPE: &str = "ce_type";
    pub const SOURCE: &str = "ce_source";
    pub const TIME: &str = "ce_time";
    pub const SPECVERSION: &str = "ce_specversion";
    pub const SUBJECT: &str = "ce_subject";
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C trace context, carried so traces span the broker.
    pub const TRACEPARENT: &str = "traceparent";
}

/// One event with its CloudEvents attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// UUIDv7: unique, time-ordered; consumers deduplicate on it.
    pub id: Uuid,
    /// Producer, e.g. `/shopstream/orders`.
    pub source: String,
    /// When the fact happened (event time, used by windows).
    pub time: DateTime<Utc>,
    /// The aggregate the event is about (the partition key by default).
    pub subject: Option<String>,
    pub traceparent: Option<String>,
    pub event: Event,
}

impl Envelope {
    /// Wraps an event with a fresh UUIDv7 id and the current time.
    pub fn new(source: impl Into<String>, event: impl Into<Event>) -> Self {
        let event = event.into();
        Envelope {
            id: Uuid::now_v7(),
            source: source.into(),
            time: Utc::now(),
            subject: Some(event.key()),
            traceparent: None,
            event,
        }
    }

    pub fn with_time(mut self, time: DateTime<Utc>) -> Self {
        self.time = time;
        self
    }

    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }

    pub fn topic(&self) -> Topic {
        self.event.topic()
    }

    /// The Kafka record key.
    pub fn key(&self) -> String {
        self.event.key()
    }

    /// The Kafka record headers, in binary content mode.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (header::SPECVERSION, SPEC_VERSION.to_owned()),
            (header::ID, self.id.to_string()),
            (header::TYPE, self.event_type().to_owned()),
            (header::SOURCE, self.source.clone()),
            (
                header::TIME,
                self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
            (header::CONTENT_TYPE, CONTENT_TYPE.to_owned()),
        ];
        if let Some(s) = &self.subject {
            h.push((header::SUBJECT, s.clone()));
        }
        if let Some(t) = &self.traceparent {
            h.push((header::TRACEPARENT, t.clone()));
        }
        h
    }

    /// The Kafka record value.
    pub fn payload(&self) -> Vec<u8> {
        self.event.to_json()
    }

    /// Decodes a record from its headers and value. Unknown headers are ignored; a missing
    /// or malformed required attribute, or a payload that breaks the schema, is an error.
    pub fn decode<'a, H>(headers: H, payload: Option<&[u8]>) -> Result<Envelope, DecodeError>
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let mut found: [Option<&[u8]>; 8] = [None; 8];
        const NAMES: [&str; 8] = [
            header::SPECVERSION,
            header::ID,
            header::TYPE,
            header::SOURCE,
            header::TIME,
            header::CONTENT_TYPE,
            header::SUBJECT,
            header::TRACEPARENT,
        ];
        for (name, value) in headers {
            if let Some(i) = NAMES.iter().position(|n| *n == name) {
                found[i] = value;
            }
        }
        let text = |i: usize| -> Result<Option<&str>, DecodeError> {
            found[i]
                .map(|v| {
                    std::str::from_utf8(v).map_err(|e| DecodeError::InvalidHeader {
                        name: NAMES[i],
                        reason: e.to_string(),
                    })
                })
                .transpose()
        };
        let required = |i: usize| text(i)?.ok_or_else(|| DecodeError::MissingHeader(NAMES[i]));

        let spec = required(0)?;
        if spec != SPEC_VERSION {
            return Err(DecodeError::UnsupportedSpecVersion(spec.to_owned()));
        }
        let id = Uuid::parse_str(required(1)?).map_err(|e| DecodeError::InvalidHeader {
            name: header::ID,
            reason: e.to_string(),
        })?;
        let event_type = required(2)?;
        let source = required(3)?.to_owned();
        let time = DateTime::parse_from_rfc3339(required(4)?)
            .map_err(|e| DecodeError::InvalidHeader {
                name: header::TIME,
                reason: e.to_string(),
            })?
            .with_timezone(&Utc);
        if let Some(ct) = text(5)?
            && !ct.starts_with(CONTENT_TYPE)
        {
            return Err(DecodeError::UnsupportedContentType(ct.to_owned()));
        }
        let subject = text(6)?.map(str::to_owned);
        let traceparent = text(7)?.map(str::to_owned);
        if Event::topic_of(event_type).is_none() {
            return Err(DecodeError::UnknownEventType(event_type.to_owned()));
        }
        let payload =
            payload
                .filter(|p| !p.is_empty())
                .ok_or_else(|| DecodeError::EmptyPayload {
                    event_type: event_type.to_owned(),
                })?;
        let event = Event::from_json(event_type, payload)?;
        Ok(Envelope {
            id,
            source,
            time,
            subject,
            traceparent,
            event,
        })
    }
}
