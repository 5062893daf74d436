//! `GET /v1/live/metrics`: an SSE stream of metric windows and anomalies as they change.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use events::domain::anomaly::AnomalyDetected;
use events::domain::users::Role;
use futures::Stream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::auth::require_role;
use crate::http::extract::ApiQuery;
use crate::http::openapi::ProblemDoc;
use crate::http::{AuthUser, Problem};

const VIEWERS: &[Role] = &[
    Role::Analyst,
    Role::FraudAnalyst,
    Role::Support,
    Role::Admin,
];

/// How often the feed looks for changes.
const POLL: Duration = Duration::from_millis(500);
/// A checkpoint transaction stamps its rows with its start time but becomes visible at
/// commit, so each poll looks this far behind its cursor; values already sent are skipped.
const OVERLAP: chrono::Duration = chrono::Duration::seconds(10);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// Comma-separated metric names (default: every metric), e.g. `orders,payment_failures`.
    pub metrics: Option<String>,
    /// Windows updated in the last this many seconds are sent first (default 900, at most
    /// 86400). A reconnect with `Last-Event-ID` resumes from that event instead.
    pub since_secs: Option<u32>,
    /// Also send `anomaly` events (default true).
    pub anomalies: Option<bool>,
}

/// `event: metric`: one window's value, summed over the processor's shards. A later event
/// for the same (metric, window, dims) replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct MetricUpdate {
    pub metric: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The metric's dimensions (currency, category, gateway/reason, product, ...), "" for none.
    pub dims: String,
    pub count: i64,
    /// Money sums are in minor units.
    pub sum: i64,
}

/// `event: anomaly`: a series left its expected band (the `anomaly.detected` event), and
/// when it was detected.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AnomalyUpdate {
    #[serde(flatten)]
    pub anomaly: AnomalyDetected,
    pub detected_at: DateTime<Utc>,
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "live",
    params(LiveQuery, ("Last-Event-ID" = Option<String>, Header, description = "resume after this event")),
    responses(
        (status = 200, description = "Server-Sent Events: `metric` (MetricUpdate) and `anomaly` (AnomalyUpdate), each with an id to resume from", content_type = "text/event-stream", body = MetricUpdate),
        (status = 401, description = "not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "not an analyst, fraud analyst, support or admin", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "unknown metric or bad parameter", body = ProblemDoc, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
async fn metrics(
    State(app): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    require_role(&user, VIEWERS)?;
    let wanted = match &q.metrics {
        None => None,
        Some(list) => {
            let names: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = names
                .iter()
                .find(|n| !streams::aggregate::METRIC_NAMES.contains(&n.as_str()))
            {
                return Err(Problem::invalid(
                    "metrics",
                    format!(
                        "unknown metric {bad:?}; known: {}",
                        streams::aggregate::METRIC_NAMES.join(", ")
                    ),
                ));
            }
            if names.is_empty() {
                return Err(Problem::invalid("metrics", "name at least one metric"));
            }
            Some(names)
        }
    };
    let since = q.since_secs.unwrap_or(900);
    if since > 86_400 {
        return Err(Problem::invalid("since_secs", "at most 86400"));
    }
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(|| Problem::bad_request("Last-Event-ID is not an id this feed sent"))?,
        ),
    };
    let cursor = match resume {
        Some(at) => at,
        None => Utc::now() - chrono::Duration::seconds(i64::from(since)),
    };
    let (tx, rx) = mpsc::channel(256);
    let feed = Feed {
        pool: app.pool.clone(),
        wanted,
        anomalies: q.anomalies.unwrap_or(true),
        cursor,
        sent: HashMap::new(),
        sent_anomalies: HashMap::new(),
    };
    tokio::spawn(feed.run(tx));
    let stream =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

type MetricKey = (String, DateTime<Utc>, DateTime<Utc>, String);

/// A `streams.anomalies` row: the event's fields, then `detected_at`.
type AnomalyRow = (
    Uuid,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    f64,
    f64,
    f64,
    f64,
    String,
    DateTime<Utc>,
);

/// A window's total over its shards, and when a shard last changed it.
#[derive(sqlx::FromRow)]
struct MetricRow {
    #[sqlx(flatten)]
    update: MetricUpdate,
    at: DateTime<Utc>,
}

/// One client's view: what it has been sent, and from when to look for changes.
struct Feed {
    pool: PgPool,
    wanted: Option<Vec<String>>,
    anomalies: bool,
    cursor: DateTime<Utc>,
    /// Values sent whose rows may still show up behind the cursor (within OVERLAP).
    sent: HashMap<MetricKey, (i64, i64, DateTime<Utc>)>,
    sent_anomalies: HashMap<Uuid, DateTime<Utc>>,
}

impl Feed {
    /// Sends changes until the client goes away.
    async fn run(mut self, tx: mpsc::Sender<Event>) {
        loop {
            match self.poll().await {
                Ok(events) => {
                    for e in events {
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live feed query failed; retrying");
                    let note = Event::default()
                        .event("error")
                        .data("the metrics store is unavailable; retrying");
                    if tx.send(note).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn poll(&mut self) -> Result<Vec<Event>, sqlx::Error> {
        let from = self.cursor - OVERLAP;
        let rows: Vec<MetricRow> = sqlx::query_as(
            "SELECT p.metric, p.window_start, p.window_end, p.dims,
                        sum(p.count)::bigint AS count, sum(p.sum)::bigint AS sum,
                        max(p.updated_at) AS at
                 FROM streams.metric_partials p
                 JOIN (SELECT DISTINCT metric, window_start, window_end, dims
                       FROM streams.metric_partials
                       WHERE updated_at > $1 AND ($2::text[] IS NULL OR metric = ANY($2))) c
                   USING (metric, window_start, window_end, dims)
                 GROUP BY 1, 2, 3, 4
                 ORDER BY max(p.updated_at), 1, 2, 4",
        )
        .bind(from)
        .bind(&self.wanted)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        let mut newest = self.cursor;
        for MetricRow { update, at } in rows {
            newest = newest.max(at);
            let key = (
                update.metric.clone(),
                update.window_start,
                update.window_end,
                update.dims.clone(),
            );
            let value = (update.count, update.sum);
            if self
                .sent
                .get(&key)
                .is_some_and(|(c, s, _)| (*c, *s) == value)
            {
                continue;
            }
            self.sent.insert(key, (value.0, value.1, at));
            out.push(event("metric", at, &update));
        }
        if self.anomalies {
            let rows: Vec<AnomalyRow> = sqlx::query_as(
                "SELECT anomaly_id, series, method, window_start, window_end, observed,
                            expected_low, expected_high, score, explanation, detected_at
                     FROM streams.anomalies WHERE detected_at > $1
                     ORDER BY detected_at",
            )
            .bind(from)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let detected_at = r.10;
                newest = newest.max(detected_at);
                if self.sent_anomalies.insert(r.0, detected_at).is_some() {
                    continue;
                }
                let update = AnomalyUpdate {
                    anomaly: AnomalyDetected {
                        anomaly_id: r.0,
                        series: r.1,
                        method: r.2,
                        window_start: r.3,
                        window_end: r.4,
                        observed: r.5,
                        expected_low: r.6,
                        expected_high: r.7,
                        score: r.8,
                        explanation: r.9,
                    },
                    detected_at,
                };
                out.push(event("anomaly", detected_at, &update));
            }
        }
        self.cursor = newest;
        let horizon = self.cursor - OVERLAP;
        self.sent.retain(|_, (_, _, at)| *at >= horizon);
        self.sent_anomalies.retain(|_, at| *at >= horizon);
        Ok(out)
    }
}

/// An SSE event whose id (microseconds of the change) lets a client resume.
fn event(kind: &str, at: DateTime<Utc>, data: &impl Serialize) -> Event {
    Event::default()
        .event(kind)
        .id(at.timestamp_micros().to_string())
        .json_data(data)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}
