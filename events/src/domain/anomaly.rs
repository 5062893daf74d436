//! Anomalies found in metric series, keyed by series name.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `anomaly.detected.v1`: an observation outside its expected band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AnomalyDetected {
    pub anomaly_id: Uuid,
    /// Series name, e.g. `orders_per_minute` or `payment_failure_rate{gateway=sim}`.
    pub series: String,
    /// Detector that fired, e.g. `ewma_zscore` or `median_mad`.
    pub method: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub observed: f64,
    pub expected_low: f64,
    pub expected_high: f64,
    pub score: f64,
    pub explanation: String,
}
