//! `POST /v1/events`.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use ingest::intake::{MAX_BATCH, Sender, validate};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::http::openapi::ProblemDoc;
use crate::http::{ApiJson, AuthUser, FieldError, Problem};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(intake))
}

/// The caller if a bearer token is sent (it must then be valid), or nobody.
pub struct MaybeUser(pub Option<AuthUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            AuthUser::from_request_parts(parts, state)
                .await
                .map(|u| MaybeUser(Some(u)))
        } else {
            Ok(MaybeUser(None))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Up to 500 records: `{"type": "product.viewed.v1", "time": "...", "data": {...}}`,
    /// without `user_id` and `session_id` (the server sets them).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    pub accepted: usize,
    /// The anonymous session id to send back as `X-Session-Id` (the server makes one when
    /// the request has none).
    pub session_id: Uuid,
}

/// Accept a batch of browser events.
#[utoipa::path(
    post,
    path = "/events",
    tag = "clickstream",
    request_body = Batch,
    params(("X-Session-Id" = Option<Uuid>, Header, description = "the browsing session; made by the server when absent")),
    responses(
        (status = 202, body = Accepted, description = "every record published"),
        (status = 422, body = ProblemDoc, content_type = "application/problem+json",
            description = "some records refused (listed, with why); the valid ones in the batch were still published"),
        (status = 503, body = ProblemDoc, content_type = "application/problem+json", description = "intake not connected to Kafka")
    )
)]
async fn intake(
    State(app): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    ApiJson(batch): ApiJson<Batch>,
) -> Result<(StatusCode, Json<Accepted>), Problem> {
    let producer = app.events.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "event intake is not connected to Kafka",
        )
    })?;
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(Problem::invalid(
            "events",
            format!("1 to {MAX_BATCH} records per batch"),
        ));
    }
    let session_id = match headers.get("x-session-id") {
        None => Uuid::now_v7(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| Problem::invalid("X-Session-Id", "not a UUID"))?,
    };
    let sender = Sender {
        user_id: user.map(|u| u.user_id),
        session_id,
    };
    let total = batch.events.len();
    let (good, bad) = validate(batch.events, sender, chrono::Utc::now());
    producer
        .publish_all(&good)
        .await
        .map_err(Problem::internal)?;
    metrics::counter!("shopstream_clickstream_accepted_total").increment(good.len() as u64);
    metrics::counter!("shopstream_clickstream_rejected_total").increment(bad.len() as u64);
    if bad.is_empty() {
        return Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                accepted: good.len(),
                session_id,
            }),
        ));
    }
    let mut p = Problem::validation(
        bad.into_iter()
            .map(|e| {
                let field = if e.field.is_empty() {
                    format!("events[{}]", e.index)
                } else {
                    format!("events[{}].{}", e.index, e.field)
                };
                FieldError::new(field, e.message)
            })
            .collect(),
    );
    p.detail = format!(
        "{} of {total} records accepted and published; {} refused",
        good.len(),
        total - good.len()
    );
    Err(p)
}
