//! HTTP concerns shared by every service, applied once.

pub mod auth;
pub mod extract;
pub mod layers;
pub mod openapi;
pub mod ops;
pub mod pagination;
pub mod problem;

pub use auth::{AuthUser, require_role};
pub use extract::{ApiJson, ClientIp};
pub use problem::{FieldError, Problem};
