//! Stock events, keyed by SKU so each SKU's changes stay ordered.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Quantity, Sku};

/// `inventory.reserved.v1`: units held for an order until `expires_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryReserved {
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub sku: Sku,
    pub quantity: Quantity,
    pub expires_at: DateTime<Utc>,
}

/// Why reserved units went back to stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    OrderCancelled,
    Expired,
    Compensation,
}

/// `inventory.released.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryReleased {
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub sku: Sku,
    pub quantity: Quantity,
    pub reason: ReleaseReason,
}

/// `inventory.adjusted.v1`: stock on hand changed (receipt, count, damage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryAdjusted {
    pub sku: Sku,
    pub delta: i64,
    pub on_hand_after: i64,
    pub reason: String,
}
