//! Shipping endpoints under `/v1/shipping`.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use events::Country;
use events::domain::users::Role;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::http::{AuthUser, FieldError, Problem, require_role};
use crate::shipping::store::{self, Quote, ShippingError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/quote", get(quote))
        .route("/shipments/{id}/advance", post(advance))
}

#[derive(Debug, Deserialize)]
pub struct QuoteQuery {
    pub weight_grams: u32,
    pub country: String,
}

async fn quote(Query(q): Query<QuoteQuery>) -> Result<Json<Quote>, Problem> {
    let country = Country::parse(q.country).map_err(|e| {
        Problem::validation(vec![FieldError {
            field: "country".into(),
            message: e.to_string(),
        }])
    })?;
    match store::quote(q.weight_grams, &country) {
        Ok(quote) => Ok(Json(quote)),
        Err(e @ ShippingError::Unsupported(_)) => Err(Problem::validation(vec![FieldError {
            field: "country".into(),
            message: e.to_string(),
        }])),
        Err(e) => Err(Problem::internal(e)),
    }
}

/// The carrier simulator's tracking update (support/admin drive it by hand or by script).
async fn advance(
    State(app): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>, Problem> {
    require_role(&user, &[Role::Support, Role::Admin])?;
    let status = store::advance(&app.pool, id)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| Problem::not_found("no such shipment"))?;
    Ok(Json(
        serde_json::json!({ "shipment_id": id, "status": status }),
    ))
}
