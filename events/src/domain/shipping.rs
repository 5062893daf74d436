//! Shipment events from the carrier integration, keyed by customer id.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Country, Money};

/// `shipment.created.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentCreated {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub carrier: String,
    pub service_level: String,
    pub destination_country: Country,
    pub zone: u8,
    pub weight_grams: u32,
    pub cost: Money,
    pub tracking_number: String,
}

/// `shipment.delivered.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentDelivered {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub delivered_at: DateTime<Utc>,
}
