//! Fraud alerts and the fraud team's decisions, keyed by customer id.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::FraudScore;

/// What the score asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    Review,
    Block,
}

/// One input of the score, kept as evidence for the reviewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    pub name: String,
    pub value: f64,
}

/// `fraud.alert.raised.v1`: at most one per order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FraudAlertRaised {
    pub alert_id: Uuid,
    pub order_id: Option<Uuid>,
    pub customer_id: Uuid,
    pub score: FraudScore,
    pub action: AlertAction,
    pub rules_fired: Vec<String>,
    pub features: Vec<Feature>,
    pub model_version: Option<String>,
}

/// The fraud team's decision on an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Approved,
    Blocked,
    MarkedFraud,
    Dismissed,
}

/// `fraud.alert.resolved.v1`: a reviewer's decision, later a training label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FraudAlertResolved {
    pub alert_id: Uuid,
    pub order_id: Option<Uuid>,
    pub customer_id: Uuid,
    pub resolution: Resolution,
    pub reviewer_id: Uuid,
    pub note: Option<String>,
}
