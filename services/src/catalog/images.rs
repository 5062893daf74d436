//! Product images: PNG or JPEG uploads (checked by their magic bytes, at most 5 MiB) stored
//! as files under `<data_dir>/images/<product>/`, served back by URL.

use std::path::PathBuf;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use events::domain::users::Role;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::http::extract::{ApiBytes, ApiPath};
use crate::http::openapi::ProblemDoc;
use crate::http::{AuthUser, Problem, require_role};

pub const MAX_IMAGE_BYTES: usize = 5 << 20;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .routes(routes!(download))
        .layer(DefaultBodyLimit::max(MAX_IMAGE_BYTES))
}

fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else {
        None
    }
}

fn path_of(app: &AppState, product: Uuid, image: Uuid, ext: &str) -> PathBuf {
    app.data_dir
        .join("images")
        .join(product.to_string())
        .join(format!("{image}.{ext}"))
}

/// The URL an image is served at.
pub fn url(product: Uuid, image: Uuid) -> String {
    format!("/v1/products/{product}/images/{image}")
}

/// Upload an image of a product (its vendor, admin): the raw PNG or JPEG bytes as the body.
#[utoipa::path(
    post,
    path = "/{id}/images",
    tag = "catalog",
    params(("id" = Uuid, Path, description = "product id")),
    request_body(content = Vec<u8>, content_type = "image/png"),
    responses(
        (status = 201, body = String, description = "the image's URL"),
        (status = 401, body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, body = ProblemDoc, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
async fn upload(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<(StatusCode, axum::Json<String>), Problem> {
    require_role(&user, &[Role::Vendor, Role::Admin])?;
    let vendor: Option<Uuid> =
        sqlx::query_scalar("SELECT vendor_id FROM catalog.products WHERE id = $1")
            .bind(id)
            .fetch_optional(&app.pool)
            .await?;
    match vendor {
        None => return Err(Problem::not_found("no such product")),
        Some(v) if v != user.user_id && !user.has(Role::Admin) => {
            return Err(Problem::forbidden(
                "only the product's vendor or an admin may add images",
            ));
        }
        Some(_) => {}
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((content_type, ext)) = sniff(&body).filter(|(ct, _)| declared.starts_with(ct)) else {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported image",
            "send a PNG or JPEG with a matching Content-Type (image/png, image/jpeg)",
        ));
    };
    let image = Uuid::now_v7();
    let path = path_of(&app, id, image, ext);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(Problem::internal)?;
    }
    // Write then rename, so a crash never leaves a half image behind a row.
    let tmp = path.with_extension("part");
    tokio::fs::write(&tmp, &body)
        .await
        .map_err(Problem::internal)?;
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(Problem::internal)?;
    sqlx::query(
        "INSERT INTO catalog.images (id, product_id, content_type, bytes) VALUES ($1, $2, $3, $4)",
    )
    .bind(image)
    .bind(id)
    .bind(content_type)
    .bind(body.len() as i32)
    .execute(&app.pool)
    .await?;
    app.product_cache.forget(id);
    Ok((StatusCode::CREATED, axum::Json(url(id, image))))
}

/// An image's bytes.
#[utoipa::path(
    get,
    path = "/{id}/images/{image}",
    tag = "catalog",
    params(("id" = Uuid, Path, description = "product id"), ("image" = Uuid, Path, description = "image id")),
    responses(
        (status = 200, content_type = "image/png", body = Vec<u8>),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json")
    )
)]
async fn download(
    State(app): State<AppState>,
    ApiPath((id, image)): ApiPath<(Uuid, Uuid)>,
) -> Result<Response, Problem> {
    let ct: Option<String> = sqlx::query_scalar(
        "SELECT content_type FROM catalog.images WHERE id = $1 AND product_id = $2",
    )
    .bind(image)
    .bind(id)
    .fetch_optional(&app.pool)
    .await?;
    let ct = ct.ok_or_else(|| Problem::not_found("no such image"))?;
    let ext = if ct == "image/png" { "png" } else { "jpg" };
    let bytes = tokio::fs::read(path_of(&app, id, image, ext))
        .await
        .map_err(|e| Problem::internal(format!("image {image} is recorded but unreadable: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, ct),
            (
                header::CACHE_CONTROL,
                "public, max-age=86400, immutable".into(),
            ),
        ],
        bytes,
    )
        .into_response())
}
