//! Inventory endpoints under `/v1/inventory`.

use axum::Json;
use axum::extract::State;
use events::Sku;
use events::domain::users::Role;
use serde::{Deserialize, Serialize};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::ApiPath;
use crate::http::openapi::ProblemDoc;
use crate::http::{ApiJson, AuthUser, Problem, require_role};
use crate::inventory::store::{self, InventoryError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_level))
        .routes(routes!(adjust))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StockLevel {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

fn parse_sku(raw: String) -> Result<Sku, Problem> {
    Sku::parse(raw).map_err(|e| Problem::invalid("sku", e.to_string()))
}

#[utoipa::path(
    get,
    path = "/{sku}",
    tag = "inventory",
    params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, body = StockLevel), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn get_level(
    State(app): State<AppState>,
    ApiPath(sku): ApiPath<String>,
) -> Result<Json<StockLevel>, Problem> {
    let sku = parse_sku(sku)?;
    let (on_hand, reserved) = store::level(&app.pool, &sku)
        .await?
        .ok_or_else(|| Problem::not_found("no stock record for this SKU"))?;
    Ok(Json(StockLevel {
        sku: sku.to_string(),
        on_hand,
        reserved,
        available: on_hand - reserved,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    pub delta: i64,
    pub reason: String,
}

#[utoipa::path(
    post,
    path = "/{sku}/adjust",
    tag = "inventory",
    summary = "Change stock on hand (vendor, admin)",
    request_body = Adjust,
    params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, body = StockLevel), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn adjust(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(sku): ApiPath<String>,
    ApiJson(req): ApiJson<Adjust>,
) -> Result<Json<StockLevel>, Problem> {
    require_role(&user, &[Role::Vendor, Role::Admin])?;
    let sku = parse_sku(sku)?;
    if req.delta == 0 || req.reason.trim().is_empty() {
        return Err(Problem::invalid(
            if req.delta == 0 { "delta" } else { "reason" },
            "must be non-zero / non-empty",
        ));
    }
    let mut tx = app.pool.begin().await?;
    match store::adjust(&mut tx, &sku, req.delta, &req.reason).await {
        Ok(_) => {}
        Err(InventoryError::Negative { .. }) => {
            return Err(Problem::conflict(
                "stock cannot go below what is on hand and reserved",
            ));
        }
        Err(e) => return Err(Problem::internal(e)),
    }
    tx.commit().await?;
    get_level(State(app), ApiPath(sku.to_string())).await
}
