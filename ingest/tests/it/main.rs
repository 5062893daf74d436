//! Integration tests of the Kafka plumbing against the real broker of the local stack
//! (`deploy/local/stack.sh up`; address from SHOPSTREAM_KAFKA_BROKERS). Every test uses its
//! own topic prefix and consumer groups, so tests run in parallel without seeing each other.

mod cluster;
mod consume;
mod dlq;
mod outbox;
mod produce;
mod simulate;
mod support;
mod topics;
