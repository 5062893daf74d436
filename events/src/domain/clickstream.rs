//! Browser clickstream: views and searches, keyed by customer or anonymous session.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `product.viewed.v1`: a product page was shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductViewed {
    pub session_id: Uuid,
    pub user_id: Option<Uuid>,
    pub product_id: Uuid,
    pub device_id: String,
    pub referrer: Option<String>,
}

/// `search.performed.v1`: a storefront search and how many results it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchPerformed {
    pub session_id: Uuid,
    pub user_id: Option<Uuid>,
    pub query: String,
    pub category: Option<String>,
    pub results_count: u32,
}
