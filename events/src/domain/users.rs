//! Account events: registration and login.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Country;

/// The role a user account holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Vendor,
    Support,
    Analyst,
    FraudAnalyst,
    Admin,
}

/// `user.registered.v1`: a new account exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub country: Country,
    pub role: Role,
    pub registered_at: DateTime<Utc>,
}

/// `user.logged_in.v1`: a successful login, with the device and network it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserLoggedIn {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub ip: String,
    pub device_id: String,
    pub user_agent: Option<String>,
}
