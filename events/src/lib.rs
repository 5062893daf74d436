//! Shopstream's event contract: the typed domain events, their CloudEvents envelope in
//! Kafka binary mode, the topic catalogue, and the JSON and Arrow schemas derived from the
//! types. Depends on nothing else of ours and on no Kafka client.
//!
//! ```
//! use events::{Envelope, samples};
//! let sent = Envelope::new("/shopstream/doc", samples()[0].clone());
//! let headers = sent.headers();
//! let got = Envelope::decode(
//!     headers.iter().map(|(k, v)| (*k, Some(v.as_bytes()))),
//!     Some(&sent.payload()),
//! ).unwrap();
//! assert_eq!(sent, got);
//! ```

mod card;
pub mod domain;
mod envelope;
mod error;
mod event;
mod money;
mod samples;
pub mod schema;
pub mod topics;

pub use card::{card_fingerprint, luhn_valid};
pub use envelope::{CONTENT_TYPE, Envelope, SPEC_VERSION, header};
pub use error::{DecodeError, ValueError};
pub use event::{DomainEvent, EVENT_TYPES, Event, json_schemas};
pub use money::{Country, Currency, FraudScore, Money, Quantity, Rating, Sku};
pub use samples::samples;
pub use topics::{CATALOGUE, Topic, TopicNames, TopicPlan, TopicSpec};
