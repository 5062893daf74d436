//! Clickstream intake: validates a batch of browser events (product views, searches) record
//! by record against the event contract, filling in who sent them, so the good records go
//! to Kafka and each bad one is reported with its reason. The HTTP route is in `services`.

use chrono::{DateTime, Duration, Utc};
use events::{Envelope, Event};
use serde::Deserialize;
use uuid::Uuid;

/// Event types a browser may send.
pub const BROWSER_EVENTS: &[&str] = &["product.viewed.v1", "search.performed.v1"];
/// Records per batch.
pub const MAX_BATCH: usize = 500;
const SOURCE: &str = "/shopstream/storefront";

/// Who sent the batch: the signed-in user, if any, and the browsing session.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub user_id: Option<Uuid>,
    pub session_id: Uuid,
}

/// Why one record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub index: usize,
    /// Path inside the record, e.g. `data.product_id`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    #[serde(rename = "type")]
    kind: String,
    time: Option<DateTime<Utc>>,
    data: serde_json::Map<String, serde_json::Value>,
}

/// Splits a batch into envelopes to publish and errors to report.
pub fn validate(
    records: Vec<serde_json::Value>,
    sender: Sender,
    now: DateTime<Utc>,
) -> (Vec<Envelope>, Vec<RecordError>) {
    let mut good = Vec::with_capacity(records.len());
    let mut bad = Vec::new();
    for (index, value) in records.into_iter().enumerate() {
        let err = |field: &str, message: String| RecordError {
            index,
            field: field.to_owned(),
            message,
        };
        let raw: RawRecord = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                bad.push(err("", e.to_string()));
                continue;
            }
        };
        if !BROWSER_EVENTS.contains(&raw.kind.as_str()) {
            bad.push(err(
                "type",
                format!(
                    "{:?} is not a browser event; expected one of {BROWSER_EVENTS:?}",
                    raw.kind
                ),
            ));
            continue;
        }
        let time = raw.time.unwrap_or(now);
        if time > now + Duration::minutes(5) || time < now - Duration::hours(24) {
            bad.push(err(
                "time",
                "must be within the last 24 hours and not in the future".into(),
            ));
            continue;
        }
        let mut data = raw.data;
        if let Some(k) = ["user_id", "session_id"]
            .into_iter()
            .find(|k| data.contains_key(*k))
        {
            bad.push(err(
                &format!("data.{k}"),
                "is set by the server from the caller; leave it out".into(),
            ));
            continue;
        }
        data.insert("session_id".into(), serde_json::json!(sender.session_id));
        data.insert("user_id".into(), serde_json::json!(sender.user_id));
        let bytes = serde_json::to_vec(&data).unwrap_or_default();
        match Event::from_json(&raw.kind, &bytes) {
            Ok(event) => good.push(Envelope {
                id: Uuid::now_v7(),
                source: SOURCE.into(),
                time,
                subject: Some(event.key()),
                traceparent: None,
                event,
            }),
            Err(events::DecodeError::InvalidPayload { source, .. }) => {
                bad.push(err("data", source.to_string()))
            }
            Err(e) => bad.push(err("data", e.to_string())),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_of_bad_record_is_named_and_good_ones_pass() {
        let sender = Sender {
            user_id: None,
            session_id: Uuid::from_u128(9),
        };
        let now = Utc::now();
        let product = Uuid::from_u128(1);
        let records = vec![
            json!({"type": "product.viewed.v1", "data": {"product_id": product, "device_id": "d", "referrer": null}}),
            json!({"type": "order.placed.v1", "data": {}}),
            json!({"type": "product.viewed.v1", "data": {"product_id": "not-a-uuid", "device_id": "d", "referrer": null}}),
            json!({"type": "product.viewed.v1", "data": {"product_id": product, "device_id": "d", "referrer": null, "session_id": product}}),
            json!({"type": "search.performed.v1", "time": now + Duration::hours(1), "data": {"query": "q", "category": null, "results_count": 1}}),
            json!({"type": "search.performed.v1", "data": {"query": "red shoes", "category": null, "results_count": 3}}),
            json!("nonsense"),
            json!({"type": "product.viewed.v1", "data": {"product_id": product, "device_id": "d", "referrer": null, "extra": 1}}),
        ];
        let (good, bad) = validate(records, sender, now);
        assert_eq!(good.len(), 2);
        assert!(
            good.iter()
                .all(|e| e.key() == sender.session_id.to_string())
        );
        let fields: Vec<(usize, &str)> = bad.iter().map(|e| (e.index, e.field.as_str())).collect();
        assert_eq!(
            fields,
            [
                (1, "type"),
                (2, "data"),
                (3, "data.session_id"),
                (4, "time"),
                (6, ""),
                (7, "data")
            ]
        );
        assert!(
            bad[1].message.contains("UUID") || bad[1].message.contains("uuid"),
            "{}",
            bad[1].message
        );
        assert!(bad[5].message.contains("extra"), "{}", bad[5].message);
    }
}
