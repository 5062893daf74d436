//! Shipping endpoints under `/v1/shipping`.

use axum::Json;
use axum::extract::State;
use events::Country;
use events::domain::users::Role;
use serde::Deserialize;
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::openapi::ProblemDoc;
use crate::http::{AuthUser, Problem, require_role};
use crate::shipping::store::{self, Quote, ShippingError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(quote))
        .routes(routes!(advance))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    pub weight_grams: u32,
    pub country: String,
}

#[utoipa::path(
    get,
    path = "/quote",
    tag = "shipping",
    params(QuoteQuery),
    responses((status = 200, body = Quote), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn quote(ApiQuery(q): ApiQuery<QuoteQuery>) -> Result<Json<Quote>, Problem> {
    let country =
        Country::parse(q.country).map_err(|e| Problem::invalid("country", e.to_string()))?;
    match store::quote(q.weight_grams, &country) {
        Ok(quote) => Ok(Json(quote)),
        Err(e @ ShippingError::Unsupported(_)) => Err(Problem::invalid("country", e.to_string())),
        Err(e) => Err(Problem::internal(e)),
    }
}

/// The carrier simulator's tracking update (support/admin drive it by hand or by script).
#[utoipa::path(
    post,
    path = "/shipments/{id}/advance",
    tag = "shipping",
    summary = "Carrier simulator: next tracking step (support, admin)",
    params(("id" = Uuid, Path, description = "shipment id")),
    responses((status = 200, body = Object, description = "new tracking status"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn advance(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
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
