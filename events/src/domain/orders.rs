//! Order lifecycle events from the checkout saga, keyed by customer id.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Country, Money, Quantity, Sku};

/// One line of an order, at the price computed server-side at checkout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price: Money,
}

/// The card used, never its number: a fingerprint for linking, BIN and last four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRef {
    pub fingerprint: String,
    pub bin: String,
    pub last4: String,
    pub country: Country,
}

/// `order.placed.v1`: the customer submitted an order; the saga starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub discount: Money,
    pub shipping: Money,
    pub tax: Money,
    pub total: Money,
    pub coupon: Option<String>,
    pub card: CardRef,
    pub billing_country: Country,
    pub shipping_country: Country,
    pub ip: String,
    pub device_id: String,
}

/// `order.confirmed.v1`: stock reserved, payment authorized, shipment created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub payment_id: Uuid,
    pub shipment_id: Uuid,
    pub total: Money,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    OutOfStock,
    PaymentDeclined,
    PaymentGatewayUnavailable,
    ShippingUnavailable,
    FraudBlocked,
    CustomerRequest,
}

/// `order.cancelled.v1`: the saga compensated or the customer cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub reason: CancelReason,
    pub detail: Option<String>,
}
