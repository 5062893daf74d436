//! The recommendation routes. Queries run inline: an arroy lookup over a candidate bitmap
//! takes well under a millisecond, less than handing it to a blocking thread would.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use events::domain::users::Role;
use ml::recs::model::{Filter, Scored, Strategy};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::openapi::ProblemDoc;
use crate::http::{AuthUser, Problem};

/// Mounted at `/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(for_user))
        .routes(routes!(similar))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecsQuery {
    /// How many items (1-100, default 10).
    pub limit: Option<usize>,
    /// Only items of this category.
    pub category: Option<String>,
    /// Only items with stock available now.
    pub in_stock: Option<bool>,
    /// Leave out items the user already bought (default true; users only).
    pub exclude_bought: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecommendedItem {
    pub product_id: String,
    pub category: Option<String>,
    /// Higher is better: the model's score, cosine similarity for similar items, or the
    /// number of users for popular items.
    pub score: f32,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendations {
    /// `personalized`, `popular` (the model does not know the user) or `similar`.
    pub strategy: String,
    /// The model version that answered.
    pub model_version: String,
    pub items: Vec<RecommendedItem>,
}

fn no_model() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "No model",
        "no recommendation model is promoted yet (shopstream ml train recs --promote)",
    )
}

fn limit(q: &RecsQuery) -> Result<usize, Problem> {
    match q.limit {
        None => Ok(10),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(Problem::invalid("limit", "must be between 1 and 100")),
    }
}

fn items(found: Vec<Scored>) -> Vec<RecommendedItem> {
    found
        .into_iter()
        .map(|s| RecommendedItem {
            product_id: s.item,
            category: s.category,
            score: s.score,
        })
        .collect()
}

#[utoipa::path(
    get,
    path = "/recommendations/users/{id}",
    tag = "recommendations",
    params(("id" = String, Path, description = "the user"), RecsQuery),
    responses((status = 200, body = Recommendations), (status = 401, description = "not signed in", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "another customer's recommendations", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"), (status = 503, description = "no model promoted yet", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn for_user(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RecsQuery>,
) -> Result<Json<Recommendations>, Problem> {
    let staff = [Role::Support, Role::Analyst, Role::Admin]
        .iter()
        .any(|r| user.has(*r));
    if !staff && user.user_id.to_string() != id {
        return Err(Problem::forbidden(
            "customers see only their own recommendations",
        ));
    }
    let k = limit(&q)?;
    let serving = app.models.current().ok_or_else(no_model)?;
    let filter = Filter {
        category: q.category.as_deref(),
        only: q.in_stock.unwrap_or(false).then_some(&serving.in_stock),
        exclude_bought: q.exclude_bought.unwrap_or(true),
    };
    let (strategy, found) = serving
        .model
        .recommend(&id, k, &filter)
        .map_err(Problem::internal)?;
    Ok(Json(Recommendations {
        strategy: match strategy {
            Strategy::Personalized => "personalized",
            Strategy::Popular => "popular",
        }
        .into(),
        model_version: serving.model.version.clone(),
        items: items(found),
    }))
}

#[utoipa::path(
    get,
    path = "/products/{id}/similar",
    tag = "recommendations",
    params(("id" = String, Path, description = "the product"), RecsQuery),
    responses((status = 200, body = Recommendations), (status = 404, description = "the model does not know the product", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"), (status = 503, description = "no model promoted yet", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn similar(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RecsQuery>,
) -> Result<Json<Recommendations>, Problem> {
    let k = limit(&q)?;
    if q.exclude_bought.is_some() {
        return Err(Problem::invalid(
            "exclude_bought",
            "applies to user recommendations only",
        ));
    }
    let serving = app.models.current().ok_or_else(no_model)?;
    let filter = Filter {
        category: q.category.as_deref(),
        only: q.in_stock.unwrap_or(false).then_some(&serving.in_stock),
        exclude_bought: false,
    };
    let found = serving
        .model
        .similar(&id, k, &filter)
        .map_err(Problem::internal)?
        .ok_or_else(|| Problem::not_found("the recommendation model does not know this product"))?;
    Ok(Json(Recommendations {
        strategy: "similar".into(),
        model_version: serving.model.version.clone(),
        items: items(found),
    }))
}
