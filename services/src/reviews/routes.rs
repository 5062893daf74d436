//! Review endpoints under `/v1/reviews`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use events::domain::reviews::ReviewPosted;
use events::{Envelope, Rating};
use ingest::outbox::enqueue;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::catalog::store::products_by_id;
use crate::http::extract::ApiQuery;
use crate::http::openapi::ProblemDoc;
use crate::http::pagination::{Page, PageQuery};
use crate::http::{ApiJson, AuthUser, FieldError, Problem};

const SOURCE: &str = "/shopstream/reviews";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, post_review))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Review {
    pub id: Uuid,
    pub product_id: Uuid,
    pub rating: i16,
    pub title: String,
    pub body: String,
    pub verified_purchase: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    pub product_id: Uuid,
    pub rating: u8,
    pub title: String,
    pub body: String,
}

#[utoipa::path(
    post,
    path = "/",
    tag = "reviews",
    request_body = NewReview,
    responses((status = 201, body = Review), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn post_review(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<NewReview>,
) -> Result<(StatusCode, Json<Review>), Problem> {
    let mut errors = Vec::new();
    let rating = Rating::new(req.rating)
        .map_err(|e| errors.push(("rating", e.to_string())))
        .ok();
    if req.title.trim().is_empty() || req.title.len() > 120 {
        errors.push(("title", "must be 1 to 120 characters".into()));
    }
    if req.body.len() > 5000 {
        errors.push(("body", "at most 5000 characters".into()));
    }
    let Some(rating) = rating.filter(|_| errors.is_empty()) else {
        return Err(Problem::validation(
            errors
                .into_iter()
                .map(|(f, m)| FieldError {
                    field: f.into(),
                    message: m,
                })
                .collect(),
        ));
    };
    if products_by_id(&app.pool, &[req.product_id])
        .await?
        .is_empty()
    {
        return Err(Problem::not_found("no such product"));
    }
    let verified: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM orders.orders o JOIN orders.lines l ON l.order_id = o.id
                        WHERE o.customer_id = $1 AND l.product_id = $2 AND o.status = 'confirmed')",
    )
    .bind(user.user_id)
    .bind(req.product_id)
    .fetch_one(&app.pool)
    .await?;
    let id = Uuid::now_v7();
    let mut tx = app.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO reviews.reviews (id, product_id, customer_id, rating, title, body, verified_purchase)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (product_id, customer_id) DO NOTHING",
    )
    .bind(id)
    .bind(req.product_id)
    .bind(user.user_id)
    .bind(i16::from(rating.get()))
    .bind(req.title.trim())
    .bind(&req.body)
    .bind(verified)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Problem::conflict("you have already reviewed this product"));
    }
    let event = ReviewPosted {
        review_id: id,
        product_id: req.product_id,
        customer_id: user.user_id,
        rating,
        title: req.title.trim().to_owned(),
        body: req.body.clone(),
        verified_purchase: verified,
    };
    enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Review {
            id,
            product_id: req.product_id,
            rating: i16::from(rating.get()),
            title: req.title.trim().to_owned(),
            body: req.body,
            verified_purchase: verified,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub product_id: Uuid,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/",
    tag = "reviews",
    params(ListQuery),
    responses((status = 200, body = Page<Review>), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Review>>, Problem> {
    let (limit, after) = PageQuery::of(q.limit, q.cursor).parse()?;
    let rows: Vec<(Uuid, i16, String, String, bool)> = sqlx::query_as(
        "SELECT id, rating, title, body, verified_purchase FROM reviews.reviews
         WHERE product_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(q.product_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await?;
    let reviews = rows
        .into_iter()
        .map(|(id, rating, title, body, verified_purchase)| Review {
            id,
            product_id: q.product_id,
            rating,
            title,
            body,
            verified_purchase,
        })
        .collect();
    Ok(Json(Page::from_rows(reviews, limit, |r| r.id)))
}
