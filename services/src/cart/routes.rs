//! Cart endpoints under `/v1/cart` and wishlist under `/v1/wishlist`.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use events::domain::cart::{CartItemAdded, CartItemRemoved};
use events::{Currency, Envelope, Money, Quantity, Sku};
use ingest::outbox::{OutboxRows, enqueue};
use serde::Deserialize;
use sqlx::Row;
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::batch::Unbatched;
use crate::cart::batch::{ADDED_PAYLOAD, AddJob, Adder};
use crate::cart::store::{self, Cart};
use crate::catalog::store::products_by_id;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::openapi::ProblemDoc;
use crate::http::{ApiJson, AuthUser, Problem};

const SOURCE: &str = "/shopstream/cart";

/// Adds `$4` units of the product `$3` to the cart of `$1` (a line made if missing) with its
/// event, and reads the cart as it leaves it (`$2`, the coupon, is NULL): one round trip.
/// The event's SKU and unit price are the product's as the statement reads them. `added`
/// is 0 when the product is not for sale (nothing was written).
static ADD_SQL: LazyLock<String> = LazyLock::new(|| {
    let event = OutboxRows::sql_joined(
        5,
        "CROSS JOIN product",
        ADDED_PAYLOAD,
        "EXISTS (SELECT 1 FROM line)",
    );
    format!(
        "WITH product AS (
            SELECT id, sku, price_minor, currency FROM catalog.products WHERE id = $3 AND status = 'active'),
         line AS (
            INSERT INTO carts.items (user_id, product_id, sku, quantity) SELECT $1, id, sku, $4 FROM product
            ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = carts.items.quantity + EXCLUDED.quantity
            RETURNING product_id, quantity, added_at),
         events AS ({event})
         {}",
        store::load_sql(
            ", (SELECT count(*) FROM line) AS added",
            Some(
                "SELECT product_id, quantity, added_at FROM carts.items WHERE user_id = $1 AND product_id <> $3
                 UNION ALL SELECT product_id, quantity, added_at FROM line"
            ),
        )
    )
});

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_cart))
        .routes(routes!(add_item))
        .routes(routes!(remove_item))
        .merge(wishlist_routes())
}

fn wishlist_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_wishlist))
        .routes(routes!(wish, unwish))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CartQuery {
    pub coupon: Option<String>,
}

#[utoipa::path(
    get,
    path = "/cart",
    tag = "cart",
    summary = "The caller's cart, priced by the server",
    params(CartQuery),
    responses((status = 200, body = Cart), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn get_cart(
    State(app): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<CartQuery>,
) -> Result<Json<Cart>, Problem> {
    priced(&app, &user, q.coupon.as_deref()).await
}

async fn priced(
    app: &AppState,
    user: &AuthUser,
    coupon: Option<&str>,
) -> Result<Json<Cart>, Problem> {
    Ok(Json(store::load(&app.pool, user.user_id, coupon).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    pub product_id: Uuid,
    pub quantity: i64,
}

#[utoipa::path(
    post,
    path = "/cart/items",
    tag = "cart",
    request_body = AddItem,
    responses((status = 200, body = Cart), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn add_item(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<AddItem>,
) -> Result<Json<Cart>, Problem> {
    let Some(quantity) = u32::try_from(req.quantity)
        .ok()
        .filter(|q| (1..=100).contains(q))
        .and_then(Quantity::new)
    else {
        return Err(Problem::invalid("quantity", "must be 1 to 100"));
    };
    // The statement fills in the product's SKU and price.
    let event = CartItemAdded {
        cart_id: user.user_id,
        session_id: user.session_id,
        user_id: Some(user.user_id),
        product_id: req.product_id,
        sku: Sku::parse("PENDING").map_err(Problem::internal)?,
        quantity,
        unit_price: Money::new(0, Currency::EUR),
    };
    let events = || -> Result<OutboxRows, Problem> {
        let mut events = OutboxRows::default();
        events.push(&Envelope::new(SOURCE, event.clone()))?;
        Ok(events)
    };
    // With the other adds waiting (crate::cart::batch); alone when the database refused
    // that batch (nothing of it was written).
    let batched = Adder::submit_to(
        &app.cart_adder,
        &app.pool,
        AddJob {
            user_id: user.user_id,
            product_id: req.product_id,
            quantity: quantity.get() as i32,
            events: events()?,
        },
    )
    .await;
    let cart = match batched {
        Ok(cart) => cart?,
        Err(Unbatched::Refused) => {
            add_alone(&app, &user, req.product_id, quantity, events()?).await?
        }
        Err(Unbatched::Unknown) => {
            return Err(Problem::internal(
                "the add's outcome is unknown (the database connection failed); read the cart",
            ));
        }
    };
    match cart {
        Some(cart) => Ok(Json(cart)),
        None => Err(Problem::not_found("no such product, or it is not for sale")),
    }
}

/// Adds to the cart in a statement of its own ([`ADD_SQL`]): the cart as it leaves it, or
/// `None` when the product is not for sale (nothing was written).
async fn add_alone(
    app: &AppState,
    user: &AuthUser,
    product_id: Uuid,
    quantity: Quantity,
    events: OutboxRows,
) -> Result<Option<Cart>, Problem> {
    let query = sqlx::query(sqlx::AssertSqlSafe(ADD_SQL.as_str()))
        .bind(user.user_id)
        .bind(None::<String>)
        .bind(product_id)
        .bind(quantity.get() as i32);
    let rows = events
        .bind(query)
        .fetch_all(&app.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_check_violation() => {
                Problem::invalid("quantity", "at most 100 of one product in a cart")
            }
            _ => Problem::internal(e),
        })?;
    let added: i64 = match rows.first() {
        Some(row) => row.try_get("added")?,
        None => 0,
    };
    if added == 0 {
        return Ok(None);
    }
    Ok(Some(Cart::from_rows(&rows, None)?))
}

#[utoipa::path(
    delete,
    path = "/cart/items/{product_id}",
    tag = "cart",
    params(("product_id" = Uuid, Path, description = "product id")),
    responses((status = 200, body = Cart), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn remove_item(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(product_id): ApiPath<Uuid>,
) -> Result<Json<Cart>, Problem> {
    let mut tx = app.pool.begin().await?;
    let removed: Option<(String, i32)> = sqlx::query_as(
        "DELETE FROM carts.items WHERE user_id = $1 AND product_id = $2 RETURNING sku, quantity",
    )
    .bind(user.user_id)
    .bind(product_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((sku, qty)) = removed else {
        return Err(Problem::not_found("this product is not in your cart"));
    };
    if let (Ok(sku), Some(quantity)) = (events::Sku::parse(sku), Quantity::new(qty as u32)) {
        let event = CartItemRemoved {
            cart_id: user.user_id,
            session_id: user.session_id,
            user_id: Some(user.user_id),
            product_id,
            sku,
            quantity,
        };
        enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    }
    tx.commit().await?;
    priced(&app, &user, None).await
}

#[utoipa::path(
    get,
    path = "/wishlist",
    tag = "cart",
    responses((status = 200, body = Vec<Uuid>), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn get_wishlist(
    State(app): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<Uuid>>, Problem> {
    let ids = sqlx::query_scalar(
        "SELECT product_id FROM carts.wishlist WHERE user_id = $1 ORDER BY added_at",
    )
    .bind(user.user_id)
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(ids))
}

#[utoipa::path(
    post,
    path = "/wishlist/{product_id}",
    tag = "cart",
    params(("product_id" = Uuid, Path, description = "product id")),
    responses((status = 204, description = "added"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn wish(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(product_id): ApiPath<Uuid>,
) -> Result<StatusCode, Problem> {
    if products_by_id(&app.pool, &[product_id]).await?.is_empty() {
        return Err(Problem::not_found("no such product"));
    }
    sqlx::query(
        "INSERT INTO carts.wishlist (user_id, product_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(user.user_id)
    .bind(product_id)
    .execute(&app.pool)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/wishlist/{product_id}",
    tag = "cart",
    params(("product_id" = Uuid, Path, description = "product id")),
    responses((status = 204, description = "removed"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn unwish(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(product_id): ApiPath<Uuid>,
) -> Result<StatusCode, Problem> {
    sqlx::query("DELETE FROM carts.wishlist WHERE user_id = $1 AND product_id = $2")
        .bind(user.user_id)
        .bind(product_id)
        .execute(&app.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
