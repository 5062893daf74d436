//! The fraud team's review queue over the alerts the fraud stream processor raises
//! (`streams.fraud_alerts`): list with filters, detail with evidence, and decisions
//! (approve, block, mark fraud, dismiss) with an audit trail. Every decision emits
//! `fraud.alert.resolved` through the outbox; those events are the model's training labels.
//! Block and mark-fraud also put the card and the customer on the blocklist checkout consults.

mod routes;

pub use routes::routes;
