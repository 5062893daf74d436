//! Payment events from the gateway, keyed by customer id.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Money;

/// `payment.authorized.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentAuthorized {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Money,
    pub gateway: String,
    pub card_fingerprint: String,
    pub auth_code: String,
}

/// Why the gateway refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    InsufficientFunds,
    CardExpired,
    IncorrectCvc,
    StolenCard,
    DoNotHonor,
    ProcessingError,
    GatewayTimeout,
    GatewayUnavailable,
}

/// `payment.failed.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentFailed {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Money,
    pub gateway: String,
    pub card_fingerprint: String,
    pub reason: DeclineReason,
}

/// `payment.refunded.v1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRefunded {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Money,
    pub reason: String,
}
