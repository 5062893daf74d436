//! Inventory endpoints under `/v1/inventory`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use events::Sku;
use events::domain::users::Role;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::http::{ApiJson, AuthUser, FieldError, Problem, require_role};
use crate::inventory::store::{self, InventoryError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/{sku}", get(get_level))
        .route("/{sku}/adjust", post(adjust))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

fn parse_sku(raw: String) -> Result<Sku, Problem> {
    Sku::parse(raw).map_err(|e| {
        Problem::validation(vec![FieldError {
            field: "sku".into(),
            message: e.to_string(),
        }])
    })
}

async fn get_level(
    State(app): State<AppState>,
    Path(sku): Path<String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    pub delta: i64,
    pub reason: String,
}

async fn adjust(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sku): Path<String>,
    ApiJson(req): ApiJson<Adjust>,
) -> Result<Json<StockLevel>, Problem> {
    require_role(&user, &[Role::Vendor, Role::Admin])?;
    let sku = parse_sku(sku)?;
    if req.delta == 0 || req.reason.trim().is_empty() {
        return Err(Problem::validation(vec![FieldError {
            field: if req.delta == 0 { "delta" } else { "reason" }.into(),
            message: "must be non-zero / non-empty".into(),
        }]));
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
    get_level(State(app), Path(sku.to_string())).await
}
