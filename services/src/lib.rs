//! Shopstream's operational services: axum routers over PostgreSQL (sqlx), each in its own
//! folder with its schema and migrations, every state change written with its event into
//! the transactional outbox. `http/` holds what every service shares: problem+json errors,
//! strict JSON input, JWT authentication and roles, and the ops endpoints.
//!
//! Implemented so far: `auth`. The other services of the platform are not written yet.

pub mod app;
pub mod auth;
pub mod http;

pub use app::{AppState, ServicesConfig, migrate, router};
