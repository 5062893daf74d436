//! Review-queue endpoints under `/v1/fraud` (roles fraud_analyst or admin).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use events::Envelope;
use events::domain::fraud::{FraudAlertResolved, Resolution};
use events::domain::users::Role;
use ingest::outbox::enqueue;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::auth::require_role;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::openapi::ProblemDoc;
use crate::http::pagination::{Page, PageQuery};
use crate::http::{ApiJson, AuthUser, Problem};

const SOURCE: &str = "/shopstream/fraud-review";
const REVIEWERS: &[Role] = &[Role::FraudAnalyst, Role::Admin];

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(detail))
        .routes(routes!(decide))
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub alert_id: Uuid,
    pub order_id: Option<Uuid>,
    pub customer_id: Uuid,
    pub card_fingerprint: Option<String>,
    pub score: i32,
    /// `review` or `block`, as raised.
    pub action: String,
    pub rules_fired: Vec<String>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// `open`, `approved`, `blocked`, `marked_fraud` or `dismissed`.
    pub status: String,
    pub event_time: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
}

type AlertRow = (
    Uuid,
    Option<Uuid>,
    Uuid,
    Option<String>,
    i32,
    String,
    Vec<String>,
    Option<i64>,
    Option<String>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);

const ALERT_COLS: &str =
    "alert_id, order_id, customer_id, card_fingerprint, score, action, rules_fired,
     amount_minor, currency, status, event_time, raised_at";

fn alert(r: AlertRow) -> Alert {
    Alert {
        alert_id: r.0,
        order_id: r.1,
        customer_id: r.2,
        card_fingerprint: r.3,
        score: r.4,
        action: r.5,
        rules_fired: r.6,
        amount_minor: r.7,
        currency: r.8,
        status: r.9,
        event_time: r.10,
        raised_at: r.11,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// open, approved, blocked, marked_fraud or dismissed.
    pub status: Option<String>,
    pub min_score: Option<i32>,
    pub max_score: Option<i32>,
    /// Only alerts where this rule fired.
    pub rule: Option<String>,
    /// Raised at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Raised before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

const STATUSES: [&str; 5] = ["open", "approved", "blocked", "marked_fraud", "dismissed"];

#[utoipa::path(
    get,
    path = "/alerts",
    tag = "fraud",
    params(ListQuery),
    responses((status = 200, body = Page<Alert>), (status = 401, description = "not signed in", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "not a fraud analyst", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Alert>>, Problem> {
    require_role(&user, REVIEWERS)?;
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(Problem::invalid("status", format!("one of {STATUSES:?}")));
    }
    for (field, v) in [("min_score", q.min_score), ("max_score", q.max_score)] {
        if v.is_some_and(|v| !(0..=99).contains(&v)) {
            return Err(Problem::invalid(field, "must be 0 to 99"));
        }
    }
    let (limit, after) = PageQuery::of(q.limit, q.cursor).parse()?;
    let rows: Vec<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLS} FROM streams.fraud_alerts
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::int IS NULL OR score >= $2) AND ($3::int IS NULL OR score <= $3)
           AND ($4::text IS NULL OR $4 = ANY(rules_fired))
           AND ($5::timestamptz IS NULL OR raised_at >= $5) AND ($6::timestamptz IS NULL OR raised_at < $6)
           AND ($7::uuid IS NULL OR alert_id < $7)
         ORDER BY alert_id DESC LIMIT $8"
    )))
    .bind(&q.status)
    .bind(q.min_score)
    .bind(q.max_score)
    .bind(&q.rule)
    .bind(q.from)
    .bind(q.to)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(
        rows.into_iter().map(alert).collect(),
        limit,
        |a| a.alert_id,
    )))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderEvidence {
    pub status: String,
    pub total_minor: i64,
    pub currency: String,
    pub billing_country: String,
    pub shipping_country: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub action: String,
    pub reviewer_id: Uuid,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertDetail {
    pub alert: Alert,
    /// The feature snapshot the score was computed from.
    #[schema(value_type = Object)]
    pub features: serde_json::Value,
    pub model_version: Option<String>,
    /// The order as the orders service knows it (absent for orders it did not take, e.g.
    /// simulated traffic).
    pub order: Option<OrderEvidence>,
    /// The customer's other alerts, newest first.
    pub customer_alerts: Vec<Alert>,
    /// Past alerts that fired the same rules, highest score first.
    pub similar: Vec<Alert>,
    pub audit: Vec<AuditEntry>,
    /// Whether the card or the customer is on the blocklist now.
    pub blocked: bool,
}

#[utoipa::path(
    get,
    path = "/alerts/{id}",
    tag = "fraud",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AlertDetail), (status = 401, description = "not signed in", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "not a fraud analyst", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such alert", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn detail(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AlertDetail>, Problem> {
    require_role(&user, REVIEWERS)?;
    let Some(row): Option<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLS} FROM streams.fraud_alerts WHERE alert_id = $1"
    )))
    .bind(id)
    .fetch_optional(&app.pool)
    .await?
    else {
        return Err(Problem::not_found("no such alert"));
    };
    let a = alert(row);
    let (features, model_version): (serde_json::Value, Option<String>) = sqlx::query_as(
        "SELECT features, model_version FROM streams.fraud_alerts WHERE alert_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await?;
    let order = match a.order_id {
        Some(o) => sqlx::query_as::<_, (String, i64, String, String, String, DateTime<Utc>)>(
            "SELECT status, total_minor, currency, billing_country, shipping_country, created_at
             FROM orders.orders WHERE id = $1",
        )
        .bind(o)
        .fetch_optional(&app.pool)
        .await?
        .map(|r| OrderEvidence {
            status: r.0,
            total_minor: r.1,
            currency: r.2,
            billing_country: r.3,
            shipping_country: r.4,
            created_at: r.5,
        }),
        None => None,
    };
    let customer_alerts: Vec<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLS} FROM streams.fraud_alerts WHERE customer_id = $1 AND alert_id <> $2
         ORDER BY raised_at DESC LIMIT 20"
    )))
    .bind(a.customer_id)
    .bind(id)
    .fetch_all(&app.pool)
    .await?;
    let similar: Vec<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLS} FROM streams.fraud_alerts WHERE rules_fired && $1 AND alert_id <> $2
           AND customer_id <> $3
         ORDER BY cardinality(ARRAY(SELECT unnest(rules_fired) INTERSECT SELECT unnest($1::text[]))) DESC,
                  score DESC LIMIT 5"
    )))
    .bind(&a.rules_fired)
    .bind(id)
    .bind(a.customer_id)
    .fetch_all(&app.pool)
    .await?;
    let audit: Vec<(String, Uuid, Option<String>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT action, reviewer_id, note, at FROM streams.fraud_alert_actions WHERE alert_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await?;
    let blocked: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM streams.blocklist
                        WHERE (kind = 'card' AND value = $1) OR (kind = 'customer' AND value = $2))",
    )
    .bind(a.card_fingerprint.clone().unwrap_or_default())
    .bind(a.customer_id.to_string())
    .fetch_one(&app.pool)
    .await?;
    Ok(Json(AlertDetail {
        alert: a,
        features,
        model_version,
        order,
        customer_alerts: customer_alerts.into_iter().map(alert).collect(),
        similar: similar.into_iter().map(alert).collect(),
        audit: audit
            .into_iter()
            .map(|(action, reviewer_id, note, at)| AuditEntry {
                action,
                reviewer_id,
                note,
                at,
            })
            .collect(),
        blocked,
    }))
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Block,
    MarkFraud,
    Dismiss,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub action: Decision,
    pub note: Option<String>,
}

#[utoipa::path(
    post,
    path = "/alerts/{id}/actions",
    tag = "fraud",
    params(("id" = Uuid, Path)),
    request_body = DecisionRequest,
    responses((status = 200, body = Alert), (status = 401, description = "not signed in", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "not a fraud analyst", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such alert", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "already resolved", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn decide(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<Alert>, Problem> {
    require_role(&user, REVIEWERS)?;
    if req.note.as_ref().is_some_and(|n| n.len() > 2000) {
        return Err(Problem::invalid("note", "at most 2000 characters"));
    }
    let (status, resolution) = match req.action {
        Decision::Approve => ("approved", Resolution::Approved),
        Decision::Block => ("blocked", Resolution::Blocked),
        Decision::MarkFraud => ("marked_fraud", Resolution::MarkedFraud),
        Decision::Dismiss => ("dismissed", Resolution::Dismissed),
    };
    let mut tx = app.pool.begin().await?;
    let Some(row): Option<AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLS} FROM streams.fraud_alerts WHERE alert_id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Err(Problem::not_found("no such alert"));
    };
    let mut a = alert(row);
    if a.status != "open" {
        return Err(Problem::conflict(format!(
            "the alert is already resolved ({})",
            a.status
        )));
    }
    sqlx::query(
        "UPDATE streams.fraud_alerts SET status = $2, resolution = $2, resolved_at = now(),
                reviewer_id = $3, note = $4 WHERE alert_id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(user.user_id)
    .bind(&req.note)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO streams.fraud_alert_actions (alert_id, action, reviewer_id, note) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(status)
    .bind(user.user_id)
    .bind(&req.note)
    .execute(&mut *tx)
    .await?;
    if matches!(req.action, Decision::Block | Decision::MarkFraud) {
        let reason = format!("{status} by a reviewer");
        for (kind, value) in [
            ("customer", Some(a.customer_id.to_string())),
            ("card", a.card_fingerprint.clone()),
        ] {
            let Some(value) = value else { continue };
            sqlx::query(
                "INSERT INTO streams.blocklist (kind, value, reason, alert_id) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(kind)
            .bind(value)
            .bind(&reason)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
    }
    let event = FraudAlertResolved {
        alert_id: id,
        order_id: a.order_id,
        customer_id: a.customer_id,
        resolution,
        reviewer_id: user.user_id,
        note: req.note.clone(),
    };
    enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    tx.commit().await?;
    a.status = status.into();
    Ok(Json(a))
}
