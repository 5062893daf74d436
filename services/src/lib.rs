//! Operational services (axum + sqlx): auth, catalog, cart, orders and the rest, each writing its events through a transactional outbox. Filled by the services issue.
//!
//! This crate is an empty shell today: it exists so the workspace layout of
//! ARCHITECTURE.md is in place; nothing here is implemented yet.
