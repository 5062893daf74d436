//! The transactional outbox. Services call [`enqueue`] inside the transaction that changes
//! their state, so an event exists exactly when its change does. The [`Relay`] publishes
//! pending rows to Kafka in order and deletes them once Kafka acknowledged them; a crash
//! between publishing and deleting re-publishes the same rows with the same event ids,
//! which consumers drop.

mod relay;
mod store;

pub use relay::{Published, Relay, RelayConfig, RelayStats};
pub use store::{OutboxError, OutboxRows, enqueue, migrator, pending_count};
