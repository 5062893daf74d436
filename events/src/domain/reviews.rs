//! Product reviews, keyed by product id.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Rating;

/// `review.posted.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewPosted {
    pub review_id: Uuid,
    pub product_id: Uuid,
    pub customer_id: Uuid,
    pub rating: Rating,
    pub title: String,
    pub body: String,
    pub verified_purchase: bool,
}
