//! The search routes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::ApiQuery;
use crate::http::openapi::ProblemDoc;
use crate::http::{FieldError, Problem};

/// Mounted at `/v1/search`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(suggest))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// What the shopper typed (1-200 characters).
    pub q: String,
    /// Only products of this category (facet counts ignore it).
    pub category: Option<String>,
    /// How many results (1-100, default 20).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub product_id: String,
    pub title: String,
    pub category: String,
    /// Reciprocal-rank-fusion score of the two retrievers.
    pub score: f64,
    /// `text`, `semantic` or `both`.
    pub matched: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResults {
    /// `blended` (full-text + semantic) or `text` (the text model is not loaded).
    pub mode: String,
    pub items: Vec<SearchHit>,
    /// Matching products per category.
    pub facets: BTreeMap<String, usize>,
}

fn check(q: &str, limit: Option<usize>, default: usize) -> Result<usize, Problem> {
    let mut errors = Vec::new();
    if q.trim().is_empty() || q.chars().count() > 200 {
        errors.push(FieldError::new("q", "must be 1 to 200 characters"));
    }
    let limit = match limit {
        None => default,
        Some(n @ 1..=100) => n,
        Some(_) => {
            errors.push(FieldError::new("limit", "must be between 1 and 100"));
            0
        }
    };
    if errors.is_empty() {
        Ok(limit)
    } else {
        Err(Problem::validation(errors))
    }
}

fn not_ready() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Search not ready",
        "the search index is being built; retry in a few seconds",
    )
}

#[utoipa::path(
    get,
    path = "",
    tag = "search",
    params(SearchQuery),
    responses((status = 200, body = SearchResults), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"), (status = 503, description = "the index is not built yet", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn search(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResults>, Problem> {
    let limit = check(&q.q, q.limit, 20)?;
    let search = &app.models.search;
    let index = search.index().ok_or_else(not_ready)?;
    let encoder = search.encoder().filter(|_| index.semantic());
    let text = q.q.clone();
    let category = q.category.clone();
    // The query embedding is a few milliseconds of CPU: off the async workers.
    let results = tokio::task::spawn_blocking(move || {
        let v = match &encoder {
            Some(e) => Some(e.embed(&[text.as_str()])?.remove(0)),
            None => None,
        };
        Ok::<_, ml::Error>((
            index.search(&text, v.as_deref(), category.as_deref(), limit),
            v.is_some(),
        ))
    })
    .await
    .map_err(Problem::internal)?
    .map_err(Problem::internal)?;
    let (r, semantic) = results;
    Ok(Json(SearchResults {
        mode: if semantic { "blended" } else { "text" }.into(),
        items: r
            .hits
            .into_iter()
            .map(|h| SearchHit {
                product_id: h.id,
                title: h.title,
                category: h.category,
                score: h.score,
                matched: serde_json::to_value(h.matched)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            })
            .collect(),
        facets: r.facets,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SuggestQuery {
    /// What the shopper has typed so far.
    pub q: String,
    /// How many suggestions (1-100, default 8).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Suggestions {
    pub suggestions: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/suggest",
    tag = "search",
    params(SuggestQuery),
    responses((status = 200, body = Suggestions), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"), (status = 503, description = "the index is not built yet", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn suggest(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<SuggestQuery>,
) -> Result<Json<Suggestions>, Problem> {
    let limit = check(&q.q, q.limit, 8)?;
    let index = app.models.search.index().ok_or_else(not_ready)?;
    Ok(Json(Suggestions {
        suggestions: index.suggest(&q.q, limit),
    }))
}
