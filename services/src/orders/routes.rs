//! Order endpoints: `POST /v1/checkout`, `GET /v1/orders`, `GET /v1/orders/{id}`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use events::domain::users::Role;
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::openapi::ProblemDoc;
use crate::http::pagination::{Page, PageQuery};
use crate::http::{ApiJson, AuthUser, ClientIp, Problem};
use crate::orders::saga::{self, Buyer, CheckoutRequest, OrderView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
        .routes(routes!(history))
        .routes(routes!(checkout))
}

/// `POST /v1/checkout`: the cart becomes an order (201), or the order this
/// `Idempotency-Key` already made is returned (200). A declined payment, missing stock or a
/// refused parcel gives an order with `status: "cancelled"` and a `cancel_reason`.
#[utoipa::path(
    post,
    path = "/checkout",
    tag = "orders",
    summary = "Check out the cart (saga: stock, payment, shipment)",
    request_body = CheckoutRequest,
    params(("Idempotency-Key" = String, Header, description = "1-128 characters; a retry returns the same order")),
    responses((status = 201, body = OrderView, description = "the order: confirmed, or cancelled with a reason"), (status = 200, body = OrderView, description = "the order this Idempotency-Key already made"), (status = 400, description = "malformed request", body = ProblemDoc, content_type = "application/problem+json"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn checkout(
    State(app): State<AppState>,
    user: AuthUser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CheckoutRequest>,
) -> Result<(StatusCode, Json<OrderView>), Problem> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| (1..=128).contains(&k.len()))
        .ok_or_else(|| {
            Problem::bad_request("an Idempotency-Key header (1-128 characters) is required")
        })?
        .to_owned();
    let buyer = Buyer {
        customer_id: user.user_id,
        ip,
    };
    let (created, order) = saga::checkout(&app, buyer, &key, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(order)))
}

#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = Uuid, Path, description = "order id")),
    responses((status = 200, body = OrderView), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn get_one(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<OrderView>, Problem> {
    let mut conn = app.pool.acquire().await?;
    let order = saga::load_order(&mut conn, id).await?;
    match order {
        Some(o)
            if o.customer_id == user.user_id
                || user.has(Role::Support)
                || user.has(Role::Admin) =>
        {
            Ok(Json(o))
        }
        // Someone else's order is reported as missing, not forbidden.
        _ => Err(Problem::not_found("no such order")),
    }
}

#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(PageQuery),
    responses((status = 200, body = Page<OrderView>), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<OrderView>>, Problem> {
    let (limit, after) = q.parse()?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM orders.orders WHERE customer_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(user.user_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await?;
    let mut conn = app.pool.acquire().await?;
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(o) = saga::load_order(&mut conn, id).await? {
            orders.push(o);
        }
    }
    Ok(Json(Page::from_rows(orders, limit, |o| o.order_id)))
}

#[derive(Debug, serde::Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub status: String,
    pub detail: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The order's states over time (owner, support, admin).
#[utoipa::path(
    get,
    path = "/orders/{id}/history",
    tag = "orders",
    params(("id" = Uuid, Path, description = "order id")),
    responses((status = 200, body = Vec<HistoryEntry>), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn history(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<HistoryEntry>>, Problem> {
    let owner: Option<Uuid> =
        sqlx::query_scalar("SELECT customer_id FROM orders.orders WHERE id = $1")
            .bind(id)
            .fetch_optional(&app.pool)
            .await?;
    match owner {
        Some(o) if o == user.user_id || user.has(Role::Support) || user.has(Role::Admin) => {}
        _ => return Err(Problem::not_found("no such order")),
    }
    let entries = sqlx::query_as(
        "SELECT status, detail, at FROM orders.history WHERE order_id = $1 ORDER BY at",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(entries))
}
