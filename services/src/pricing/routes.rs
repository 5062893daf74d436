//! Promotion administration under `/v1/pricing` (admin) and price history (public).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use events::domain::users::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::ApiPath;
use crate::http::openapi::ProblemDoc;
use crate::http::{ApiJson, AuthUser, FieldError, Problem, require_role};
use crate::pricing::store::Promotion;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(deactivate))
        .routes(routes!(history))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPromotion {
    pub name: String,
    pub kind: String,
    pub value: i64,
    pub product_id: Option<Uuid>,
    pub category: Option<String>,
    pub coupon_code: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[utoipa::path(
    post,
    path = "/promotions",
    tag = "pricing",
    summary = "Create a promotion or coupon (admin)",
    request_body = NewPromotion,
    responses((status = 201, body = Promotion), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<NewPromotion>,
) -> Result<(StatusCode, Json<Promotion>), Problem> {
    require_role(&user, &[Role::Admin])?;
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: &str| {
        errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        })
    };
    if req.name.trim().is_empty() {
        bad("name", "must not be empty");
    }
    match req.kind.as_str() {
        "percent" if !(1..=100).contains(&req.value) => bad("value", "a percent is 1 to 100"),
        "fixed" if req.value <= 0 => bad("value", "must be positive minor units"),
        "percent" | "fixed" => {}
        _ => bad("kind", "percent or fixed"),
    }
    if req.ends_at <= req.starts_at {
        bad("ends_at", "must be after starts_at");
    }
    let code = req.coupon_code.as_ref().map(|c| c.trim().to_uppercase());
    if code.as_ref().is_some_and(|c| {
        c.len() < 3 || c.len() > 32 || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    }) {
        bad("coupon_code", "3 to 32 letters, digits or '-'");
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let promo = Promotion {
        id: Uuid::now_v7(),
        name: req.name.trim().to_owned(),
        kind: req.kind,
        value: req.value,
        product_id: req.product_id,
        category: req.category,
        coupon_code: code,
    };
    let inserted = sqlx::query(
        "INSERT INTO pricing.promotions (id, name, kind, value, product_id, category, coupon_code, starts_at, ends_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (coupon_code) DO NOTHING",
    )
    .bind(promo.id)
    .bind(&promo.name)
    .bind(&promo.kind)
    .bind(promo.value)
    .bind(promo.product_id)
    .bind(&promo.category)
    .bind(&promo.coupon_code)
    .bind(req.starts_at)
    .bind(req.ends_at)
    .execute(&app.pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Problem::conflict("this coupon code is taken"));
    }
    Ok((StatusCode::CREATED, Json(promo)))
}

#[utoipa::path(
    get,
    path = "/promotions",
    tag = "pricing",
    responses((status = 200, body = Vec<Promotion>), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn list(
    State(app): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<Promotion>>, Problem> {
    require_role(&user, &[Role::Admin])?;
    let promos = sqlx::query_as(
        "SELECT id, name, kind, value, product_id, category, coupon_code FROM pricing.promotions WHERE active ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(promos))
}

#[utoipa::path(
    delete,
    path = "/promotions/{id}",
    tag = "pricing",
    params(("id" = Uuid, Path, description = "promotion id")),
    responses((status = 204, description = "deactivated"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn deactivate(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, Problem> {
    require_role(&user, &[Role::Admin])?;
    let done = sqlx::query("UPDATE pricing.promotions SET active = false WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Problem::not_found("no such promotion"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PricePoint {
    pub price_minor: i64,
    pub currency: String,
    pub valid_from: DateTime<Utc>,
}

#[utoipa::path(
    get,
    path = "/history/{product_id}",
    tag = "pricing",
    summary = "Base price history of a product",
    params(("product_id" = Uuid, Path, description = "product id")),
    responses((status = 200, body = Vec<PricePoint>), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn history(
    State(app): State<AppState>,
    ApiPath(product_id): ApiPath<Uuid>,
) -> Result<Json<Vec<PricePoint>>, Problem> {
    let points: Vec<PricePoint> = sqlx::query_as(
        "SELECT price_minor, currency, valid_from FROM catalog.price_history WHERE product_id = $1 ORDER BY valid_from",
    )
    .bind(product_id)
    .fetch_all(&app.pool)
    .await?;
    if points.is_empty() {
        return Err(Problem::not_found("no such product"));
    }
    Ok(Json(points))
}
