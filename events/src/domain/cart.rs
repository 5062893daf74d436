//! Cart events up to the start of checkout, keyed by customer or anonymous session.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Money, Quantity, Sku};

/// `cart.item_added.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartItemAdded {
    pub cart_id: Uuid,
    pub session_id: Uuid,
    pub user_id: Option<Uuid>,
    pub product_id: Uuid,
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price: Money,
}

/// `cart.item_removed.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartItemRemoved {
    pub cart_id: Uuid,
    pub session_id: Uuid,
    pub user_id: Option<Uuid>,
    pub product_id: Uuid,
    pub sku: Sku,
    pub quantity: Quantity,
}

/// `checkout.started.v1`: the customer began paying for a cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutStarted {
    pub checkout_id: Uuid,
    pub cart_id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub item_count: u32,
    pub total: Money,
}
