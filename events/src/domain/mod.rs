//! The payloads of every domain event, grouped by the family (and topic) they belong to.
//! Each type is the JSON value of one CloudEvent; the envelope lives in `envelope.rs`.

pub mod anomaly;
pub mod cart;
pub mod catalog;
pub mod clickstream;
pub mod fraud;
pub mod inventory;
pub mod orders;
pub mod payments;
pub mod reviews;
pub mod shipping;
pub mod users;
