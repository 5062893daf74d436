//! HTTP concerns shared by every service, applied once.

pub mod auth;
pub mod extract;
pub mod layers;
pub mod openapi;
pub mod ops;
pub mod pagination;
pub mod problem;

pub use auth::{AuthUser, authenticate, require_role};
pub use extract::{ApiJson, ClientIp};
pub use problem::{FieldError, Problem};

/// The wire name of a unit enum variant (its serde rename), e.g. `fraud_analyst`, the form
/// stored in the database.
pub fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
