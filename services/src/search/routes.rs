//! The search routes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Multipart, State};
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
        .merge(
            OpenApiRouter::new()
                .routes(routes!(by_image))
                // The picture plus the multipart framing.
                .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024)),
        )
}

/// The largest picture `POST /v1/search/image` accepts.
pub const MAX_UPLOAD_BYTES: usize = 5 << 20;

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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImageQuery {
    /// Only products of this category.
    pub category: Option<String>,
    /// How many products (1-50, default 10).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageHit {
    pub product_id: String,
    pub category: String,
    /// The product's picture that looks most like the query.
    pub image_url: String,
    /// Cosine similarity of the two pictures' embeddings.
    pub similarity: f32,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageResults {
    pub items: Vec<ImageHit>,
    /// Product images in the index.
    pub indexed_images: usize,
}

/// The multipart upload of `POST /v1/search/image`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form for OpenAPI; the handler reads it as a stream
pub struct ImageUpload {
    /// A PNG or JPEG picture, at most 5 MiB and 40 megapixels.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    pub image: String,
}

fn too_large(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "Image too large", detail)
}

/// The bytes of the form's `image` field.
async fn upload(mut form: Multipart) -> Result<Vec<u8>, Problem> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(format!("the upload is over {} MiB", MAX_UPLOAD_BYTES >> 20))
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "Malformed upload", e.body_text())
        }
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() == Some("image") {
            let bytes = field.bytes().await.map_err(bad)?;
            if bytes.len() > MAX_UPLOAD_BYTES {
                return Err(too_large(format!(
                    "the image is {} bytes; at most {MAX_UPLOAD_BYTES}",
                    bytes.len()
                )));
            }
            return Ok(bytes.to_vec());
        }
    }
    Err(Problem::validation(vec![FieldError::new(
        "image",
        "send the picture as a multipart/form-data field named image",
    )]))
}

/// Products that look like a picture.
#[utoipa::path(
    post,
    path = "/image",
    tag = "search",
    params(ImageQuery),
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, body = ImageResults),
        (status = 400, description = "not a multipart form", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "over 5 MiB or 40 megapixels", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "no image field, not a PNG/JPEG, or a bad parameter", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "the image model or index is not ready", body = ProblemDoc, content_type = "application/problem+json")
    )
)]
async fn by_image(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ImageQuery>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<ImageResults>, Problem> {
    let limit = match q.limit {
        None => 10,
        Some(n @ 1..=50) => n,
        Some(_) => {
            return Err(Problem::validation(vec![FieldError::new(
                "limit",
                "must be between 1 and 50",
            )]));
        }
    };
    let form = form.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Malformed upload",
            format!("{e}: send multipart/form-data with an image field"),
        )
    })?;
    let bytes = upload(form).await?;
    let images = &app.models.images;
    let (Some(encoder), Some(index)) = (images.encoder(), images.index()) else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Image search not ready",
            images.load_error().map_or_else(
                || "the image index is being built; retry in a few seconds".to_string(),
                |e| format!("the image model is not loaded: {e}"),
            ),
        ));
    };
    let category = q.category.clone();
    // Decoding and the network are tens of milliseconds of CPU: off the async workers.
    let found = tokio::task::spawn_blocking(move || {
        let v = match encoder.embed_bytes(&bytes)? {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        };
        index
            .search(&v, limit, category.as_deref(), None)
            .map(|hits| Ok((hits, index.len())))
    })
    .await
    .map_err(Problem::internal)?
    .map_err(Problem::internal)?;
    let (hits, indexed_images) = match found {
        Ok(x) => x,
        Err(ml::vision::Rejected::TooLarge(m)) => return Err(too_large(m)),
        Err(ml::vision::Rejected::NotAnImage(m)) => {
            return Err(Problem::validation(vec![FieldError::new(
                "image",
                format!("{m} (send a PNG or JPEG)"),
            )]));
        }
    };
    Ok(Json(ImageResults {
        items: hits
            .into_iter()
            .map(|h| ImageHit {
                image_url: format!("/v1/products/{}/images/{}", h.product, h.image),
                product_id: h.product,
                category: h.category,
                similarity: h.similarity,
            })
            .collect(),
        indexed_images,
    }))
}
