//! Shopstream's operational services: axum routers over PostgreSQL (sqlx), each in its own
//! folder with its schema and migrations, every state change written with its event into
//! the transactional outbox. `http/` holds what every service shares: problem+json errors,
//! strict JSON input, JWT authentication and roles, and the ops endpoints.
//!
//! Implemented so far: auth, catalog, inventory, cart (+ wishlist), payments (gateway
//! simulator), shipping (carrier simulator), orders (checkout saga), users (profiles,
//! addresses), reviews, pricing (promotions and coupons), recommendations (served from the
//! `ml` registry).

pub mod app;
pub mod auth;
pub mod batch;
pub mod cart;
pub mod catalog;
pub mod clickstream;
pub mod fraud;
pub mod http;
pub mod inventory;
pub mod live;
pub mod orders;
pub mod payments;
pub mod pricing;
pub mod recs;
pub mod reviews;
pub mod search;
pub mod shipping;
pub mod users;

pub use app::{AppState, ServicesConfig, migrate, openapi, router, router_with, upkeep};
