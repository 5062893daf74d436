//! Injected fraud and anomalies, and their ground truth. Each injection writes the events of its pattern and
//! one label naming the kind, the customer, the card, the orders involved and the time span,
//! so the stream processors' precision and recall can be measured against it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudKind {
    /// Many small declined payments, then one large purchase on the same card.
    CardTesting,
    /// A known customer from a new device and address ordering high value.
    AccountTakeover,
    /// A burst of orders from one customer within minutes.
    VelocityBurst,
    /// Billing and shipping countries differ (and differ from the customer's).
    CountryMismatch,
    /// Several accounts paying with one card from one device.
    SharedCard,
}

impl FraudKind {
    pub const ALL: [FraudKind; 5] = [
        FraudKind::CardTesting,
        FraudKind::AccountTakeover,
        FraudKind::VelocityBurst,
        FraudKind::CountryMismatch,
        FraudKind::SharedCard,
    ];
}

/// One line of the label log (JSON Lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub kind: FraudKind,
    pub customer_ids: Vec<Uuid>,
    pub card_fingerprint: String,
    pub order_ids: Vec<Uuid>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Five times the usual sessions.
    TrafficSpike,
    /// Most payments fail with the gateway unavailable.
    GatewayOutage,
    /// One product sells at 1 % of its price.
    PricingGlitch,
    /// One category gets no views and no orders.
    StalledCategory,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 4] = [
        AnomalyKind::TrafficSpike,
        AnomalyKind::GatewayOutage,
        AnomalyKind::PricingGlitch,
        AnomalyKind::StalledCategory,
    ];
}

/// One injected anomaly: what, when, and on what (product id or category, when it applies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyLabel {
    pub kind: AnomalyKind,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub subject: Option<String>,
}

/// A line of the label log: `{"label": "fraud", ...}` or `{"label": "anomaly", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "label", rename_all = "snake_case")]
pub enum GroundTruth {
    Fraud(Label),
    Anomaly(AnomalyLabel),
}
