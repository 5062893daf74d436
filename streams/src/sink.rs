//! Idempotent PostgreSQL sinks, written inside the checkpoint transaction.

use chrono::{DateTime, Utc};
use events::domain::anomaly::AnomalyDetected;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::window::{Millis, Window};

/// One fraud alert for the review queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    pub alert_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub card_fingerprint: String,
    pub score: u8,
    pub action: String,
    pub rules_fired: Vec<String>,
    pub features: serde_json::Value,
    pub model_version: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub event_time: DateTime<Utc>,
}

/// A row for a sink table.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A shard's absolute value for one window (upserted).
    Metric {
        metric: &'static str,
        window: Window,
        dims: String,
        shard: String,
        count: i64,
        sum: i64,
    },
    /// One alert per order (a repeat is ignored).
    Alert(Box<AlertRow>),
    /// A card or customer checkout refuses from now on.
    Block {
        kind: &'static str,
        value: String,
        reason: String,
        alert_id: Uuid,
    },
    Anomaly(Box<AnomalyDetected>),
}

pub(crate) fn ts(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub async fn write(tx: &mut Transaction<'_, Postgres>, rows: &[Row]) -> Result<(), sqlx::Error> {
    let mut m_metric = Vec::new();
    let mut m_start = Vec::new();
    let mut m_end = Vec::new();
    let mut m_dims = Vec::new();
    let mut m_shard = Vec::new();
    let mut m_count = Vec::new();
    let mut m_sum = Vec::new();
    for r in rows {
        match r {
            Row::Metric {
                metric,
                window,
                dims,
                shard,
                count,
                sum,
            } => {
                m_metric.push(metric.to_string());
                m_start.push(ts(window.start));
                m_end.push(ts(window.end));
                m_dims.push(dims.clone());
                m_shard.push(shard.clone());
                m_count.push(*count);
                m_sum.push(*sum);
            }
            Row::Alert(a) => {
                sqlx::query(
                    "INSERT INTO streams.fraud_alerts (alert_id, order_id, customer_id, card_fingerprint,
                        score, action, rules_fired, features, model_version, amount_minor, currency, event_time)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING",
                )
                .bind(a.alert_id)
                .bind(a.order_id)
                .bind(a.customer_id)
                .bind(&a.card_fingerprint)
                .bind(i32::from(a.score))
                .bind(&a.action)
                .bind(&a.rules_fired)
                .bind(&a.features)
                .bind(&a.model_version)
                .bind(a.amount_minor)
                .bind(&a.currency)
                .bind(a.event_time)
                .execute(&mut **tx)
                .await?;
            }
            Row::Block {
                kind,
                value,
                reason,
                alert_id,
            } => {
                sqlx::query(
                    "INSERT INTO streams.blocklist (kind, value, reason, alert_id) VALUES ($1,$2,$3,$4)
                     ON CONFLICT DO NOTHING",
                )
                .bind(kind)
                .bind(value)
                .bind(reason)
                .bind(alert_id)
                .execute(&mut **tx)
                .await?;
            }
            Row::Anomaly(a) => {
                sqlx::query(
                    "INSERT INTO streams.anomalies (anomaly_id, series, method, window_start, window_end,
                        observed, expected_low, expected_high, score, explanation)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
                )
                .bind(a.anomaly_id)
                .bind(&a.series)
                .bind(&a.method)
                .bind(a.window_start)
                .bind(a.window_end)
                .bind(a.observed)
                .bind(a.expected_low)
                .bind(a.expected_high)
                .bind(a.score)
                .bind(&a.explanation)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    if !m_metric.is_empty() {
        sqlx::query(
            "INSERT INTO streams.metric_partials (metric, window_start, window_end, dims, shard, count, sum)
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[],
                                  $6::bigint[], $7::bigint[])
             ON CONFLICT (metric, window_start, window_end, dims, shard)
             DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum, updated_at = now()",
        )
        .bind(&m_metric)
        .bind(&m_start)
        .bind(&m_end)
        .bind(&m_dims)
        .bind(&m_shard)
        .bind(&m_count)
        .bind(&m_sum)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
