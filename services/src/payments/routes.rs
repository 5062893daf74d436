//! Payment endpoints under `/v1/payments`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use events::domain::users::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::ApiPath;
use crate::http::openapi::ProblemDoc;
use crate::http::{ApiJson, AuthUser, Problem, require_role};
use crate::payments::store::{self, PaymentError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_payment))
        .routes(routes!(refund))
        .routes(routes!(outage))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub decline_reason: Option<String>,
}

#[utoipa::path(
    get,
    path = "/orders/{order_id}",
    tag = "payments",
    params(("order_id" = Uuid, Path, description = "order id")),
    responses((status = 200, body = PaymentView), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn get_payment(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<PaymentView>, Problem> {
    let row: Option<(Uuid, Uuid, String, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, customer_id, status, amount_minor, currency, decline_reason FROM payments.payments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(&app.pool)
    .await?;
    let Some((payment_id, customer, status, amount_minor, currency, decline_reason)) = row else {
        return Err(Problem::not_found("no payment for this order"));
    };
    if customer != user.user_id && !user.has(Role::Support) && !user.has(Role::Admin) {
        // Not found rather than forbidden: do not confirm that someone else's order exists.
        return Err(Problem::not_found("no payment for this order"));
    }
    Ok(Json(PaymentView {
        payment_id,
        order_id,
        status,
        amount_minor,
        currency,
        decline_reason,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub reason: String,
}

#[utoipa::path(
    post,
    path = "/orders/{order_id}/refund",
    tag = "payments",
    summary = "Refund a captured payment (support, admin)",
    request_body = RefundRequest,
    params(("order_id" = Uuid, Path, description = "order id")),
    responses((status = 204, description = "refunded"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 502, description = "payment gateway failed", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn refund(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(order_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<RefundRequest>,
) -> Result<StatusCode, Problem> {
    require_role(&user, &[Role::Support, Role::Admin])?;
    match store::refund(&app.pool, &app.gateway, order_id, &req.reason).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(PaymentError::NotFound(_)) => Err(Problem::not_found("no payment for this order")),
        Err(e @ PaymentError::WrongState { .. }) => Err(Problem::conflict(e.to_string())),
        Err(PaymentError::Gateway(f)) => Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "Payment gateway failed",
            f.to_string(),
        )),
        Err(e) => Err(Problem::internal(e)),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutageRequest {
    pub seconds: u64,
}

/// Simulator control: every gateway call fails for the given time (admin only).
#[utoipa::path(
    post,
    path = "/simulator/outage",
    tag = "payments",
    summary = "Payment-gateway simulator: fail every call for a while (admin)",
    request_body = OutageRequest,
    responses((status = 204, description = "outage started"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn outage(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<OutageRequest>,
) -> Result<StatusCode, Problem> {
    require_role(&user, &[Role::Admin])?;
    app.gateway
        .simulator
        .start_outage(Duration::from_secs(req.seconds.min(3600)));
    Ok(StatusCode::NO_CONTENT)
}
