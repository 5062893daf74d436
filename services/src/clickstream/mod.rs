//! Clickstream intake: `POST /v1/events`, a batch of browser events (product views,
//! searches) from the storefront, validated record by record (`ingest::intake`) and
//! published straight to Kafka: clickstream is not state, so it skips the outbox.

mod routes;

pub use routes::routes;
