//! Catalog endpoints under `/v1/products`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use events::domain::catalog::{
    Attribute, PriceChanged, ProductCreated, ProductStatus, ProductUpdated,
};
use events::domain::users::Role;
use events::{Envelope, Money, Sku};
use ingest::outbox::enqueue;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::catalog::store::{COLUMNS, Product, enrich, from_row};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::openapi::ProblemDoc;
use crate::http::pagination::{Page, PageQuery};
use crate::http::{ApiJson, AuthUser, FieldError, Problem, require_role};

const SOURCE: &str = "/shopstream/catalog";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update))
        .routes(routes!(facets))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FacetQuery {
    /// Restrict the attribute facets to one category.
    pub category: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct FacetCount {
    pub value: String,
    pub count: i64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct AttributeFacet {
    pub name: String,
    pub value: String,
    pub count: i64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Facets {
    /// Active products per category.
    pub categories: Vec<FacetCount>,
    /// Active products per attribute value (within the category, when given).
    pub attributes: Vec<AttributeFacet>,
}

/// Search facets: how many active products each category and attribute value has.
#[utoipa::path(
    get,
    path = "/facets",
    tag = "catalog",
    params(FacetQuery),
    responses((status = 200, body = Facets))
)]
async fn facets(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<FacetQuery>,
) -> Result<Json<Facets>, Problem> {
    let categories = sqlx::query_as(
        "SELECT category AS value, count(*) AS count FROM catalog.products
         WHERE status = 'active' GROUP BY category ORDER BY count DESC, category",
    )
    .fetch_all(&app.pool)
    .await?;
    let attributes = sqlx::query_as(
        "SELECT a.key AS name, a.value AS value, count(*) AS count
         FROM catalog.products p, jsonb_each_text(p.attributes) a
         WHERE p.status = 'active' AND ($1::text IS NULL OR p.category = $1)
         GROUP BY a.key, a.value ORDER BY a.key, count DESC, a.value",
    )
    .bind(&q.category)
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Facets {
        categories,
        attributes,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub sku: Sku,
    pub category: String,
    pub names: BTreeMap<String, String>,
    #[serde(default)]
    pub descriptions: BTreeMap<String, String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub price: Money,
    pub weight_grams: i32,
    /// Make this product a variant of another (same vendor; one level deep).
    pub variant_of: Option<Uuid>,
}

fn check_common(
    errors: &mut Vec<FieldError>,
    names: Option<&BTreeMap<String, String>>,
    category: Option<&str>,
    price: Option<&Money>,
) {
    if let Some(n) = names
        && (n.is_empty() || n.values().any(|v| v.trim().is_empty() || v.len() > 200))
    {
        errors.push(FieldError::new(
            "names",
            "at least one language, each 1 to 200 characters",
        ));
    }
    if let Some(c) = category
        && (c.trim().is_empty() || c.len() > 100)
    {
        errors.push(FieldError::new("category", "must be 1 to 100 characters"));
    }
    if let Some(p) = price
        && p.amount_minor <= 0
    {
        errors.push(FieldError::new("price.amount_minor", "must be positive"));
    }
}

fn title(names: &BTreeMap<String, String>) -> String {
    names
        .get("en")
        .or_else(|| names.values().next())
        .cloned()
        .unwrap_or_default()
}

fn attributes(map: &BTreeMap<String, String>) -> Vec<Attribute> {
    map.iter()
        .map(|(k, v)| Attribute {
            name: k.clone(),
            value: v.clone(),
        })
        .collect()
}

#[utoipa::path(
    post,
    path = "/",
    tag = "catalog",
    summary = "Create a product (vendor, admin)",
    request_body = NewProduct,
    responses((status = 201, body = Product), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<NewProduct>,
) -> Result<(StatusCode, Json<Product>), Problem> {
    require_role(&user, &[Role::Vendor, Role::Admin])?;
    let mut errors = Vec::new();
    check_common(
        &mut errors,
        Some(&req.names),
        Some(&req.category),
        Some(&req.price),
    );
    if req.weight_grams <= 0 {
        errors.push(FieldError::new("weight_grams", "must be positive"));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    if let Some(parent) = req.variant_of {
        let row: Option<(Uuid, Option<Uuid>)> =
            sqlx::query_as("SELECT vendor_id, variant_of FROM catalog.products WHERE id = $1")
                .bind(parent)
                .fetch_optional(&app.pool)
                .await?;
        match row {
            None => {
                return Err(Problem::validation(vec![FieldError::new(
                    "variant_of",
                    "no such product",
                )]));
            }
            Some((_, Some(_))) => {
                return Err(Problem::validation(vec![FieldError::new(
                    "variant_of",
                    "is itself a variant; name its parent",
                )]));
            }
            Some((vendor, None)) if vendor != user.user_id && !user.has(Role::Admin) => {
                return Err(Problem::forbidden(
                    "variants belong to the vendor of their product",
                ));
            }
            Some(_) => {}
        }
        app.product_cache.forget(parent);
    }
    let id = Uuid::now_v7();
    let mut tx = app.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO catalog.products
           (id, sku, vendor_id, category, names, descriptions, attributes, price_minor, currency, weight_grams, variant_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (sku) DO NOTHING",
    )
    .bind(id)
    .bind(req.sku.as_str())
    .bind(user.user_id)
    .bind(&req.category)
    .bind(sqlx::types::Json(&req.names))
    .bind(sqlx::types::Json(&req.descriptions))
    .bind(sqlx::types::Json(&req.attributes))
    .bind(req.price.amount_minor)
    .bind(req.price.currency.as_str())
    .bind(req.weight_grams)
    .bind(req.variant_of)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Problem::conflict(format!("SKU {} already exists", req.sku)));
    }
    sqlx::query(
        "INSERT INTO catalog.price_history (product_id, price_minor, currency) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(req.price.amount_minor)
    .bind(req.price.currency.as_str())
    .execute(&mut *tx)
    .await?;
    let event = ProductCreated {
        product_id: id,
        sku: req.sku.clone(),
        vendor_id: user.user_id,
        category: req.category.clone(),
        title: title(&req.names),
        price: req.price,
        weight_grams: req.weight_grams as u32,
        attributes: attributes(&req.attributes),
        status: ProductStatus::Active,
    };
    enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    tx.commit().await?;
    let product = Product {
        id,
        sku: req.sku,
        vendor_id: user.user_id,
        category: req.category,
        names: req.names,
        descriptions: req.descriptions,
        attributes: serde_json::to_value(&req.attributes).unwrap_or_default(),
        price: req.price,
        weight_grams: req.weight_grams,
        status: "active".into(),
        variant_of: req.variant_of,
        variants: Vec::new(),
        images: Vec::new(),
    };
    Ok((StatusCode::CREATED, Json(product)))
}

#[utoipa::path(
    get,
    path = "/{id}",
    tag = "catalog",
    params(("id" = Uuid, Path, description = "product id")),
    responses((status = 200, body = Product), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn get_one(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, Problem> {
    let body = match app.product_cache.get(id) {
        Some(body) => body,
        None => {
            let sql = format!("SELECT {COLUMNS} FROM catalog.products WHERE id = $1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&app.pool)
                .await?
                .ok_or_else(|| Problem::not_found("no such product"))?;
            let mut product = [from_row(&row)?];
            enrich(&app.pool, &mut product).await?;
            let body = Bytes::from(serde_json::to_vec(&product[0]).map_err(Problem::internal)?);
            app.product_cache.put(id, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub category: Option<String>,
    // Not `#[serde(flatten)]`: flattening breaks number parsing in query strings.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/",
    tag = "catalog",
    summary = "Active products, cursor-paged",
    params(ListQuery),
    responses((status = 200, body = Page<Product>), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Product>>, Problem> {
    let (limit, after) = PageQuery::of(q.limit, q.cursor.clone()).parse()?;
    let sql = format!(
        "SELECT {COLUMNS} FROM catalog.products
         WHERE status = 'active' AND ($1::text IS NULL OR category = $1) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&q.category)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&app.pool)
        .await?;
    let mut products = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    enrich(&app.pool, &mut products).await?;
    Ok(Json(Page::from_rows(products, limit, |p| p.id)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub names: Option<BTreeMap<String, String>>,
    pub category: Option<String>,
    pub price: Option<Money>,
    pub status: Option<ProductStatus>,
}

#[utoipa::path(
    patch,
    path = "/{id}",
    tag = "catalog",
    summary = "Edit a product (its vendor, admin)",
    request_body = ProductPatch,
    params(("id" = Uuid, Path, description = "product id")),
    responses((status = 200, body = Product), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ProductPatch>,
) -> Result<Json<Product>, Problem> {
    require_role(&user, &[Role::Vendor, Role::Admin])?;
    let mut errors = Vec::new();
    check_common(
        &mut errors,
        req.names.as_ref(),
        req.category.as_deref(),
        req.price.as_ref(),
    );
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let mut tx = app.pool.begin().await?;
    let sql = format!("SELECT {COLUMNS} FROM catalog.products WHERE id = $1 FOR UPDATE");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Problem::not_found("no such product"))?;
    let mut p = from_row(&row)?;
    if p.vendor_id != user.user_id && !user.has(Role::Admin) {
        return Err(Problem::forbidden(
            "only the product's vendor or an admin may edit it",
        ));
    }
    let old_price = p.price;
    if let Some(n) = &req.names {
        p.names = n.clone();
    }
    if let Some(c) = &req.category {
        p.category = c.clone();
    }
    if let Some(price) = req.price {
        p.price = price;
    }
    if let Some(s) = req.status {
        p.status = crate::http::wire_name(&s);
    }
    sqlx::query(
        "UPDATE catalog.products SET names = $2, category = $3, price_minor = $4, currency = $5,
           status = $6, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(sqlx::types::Json(&p.names))
    .bind(&p.category)
    .bind(p.price.amount_minor)
    .bind(p.price.currency.as_str())
    .bind(&p.status)
    .execute(&mut *tx)
    .await?;
    if req.names.is_some() || req.category.is_some() || req.status.is_some() {
        let event = ProductUpdated {
            product_id: id,
            sku: p.sku.clone(),
            title: req.names.as_ref().map(title),
            category: req.category.clone(),
            status: req.status,
            attributes: None,
        };
        enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    }
    if p.price != old_price {
        sqlx::query("INSERT INTO catalog.price_history (product_id, price_minor, currency) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(p.price.amount_minor)
            .bind(p.price.currency.as_str())
            .execute(&mut *tx)
            .await?;
        let event = PriceChanged {
            product_id: id,
            sku: p.sku.clone(),
            old_price,
            new_price: p.price,
            reason: "vendor update".into(),
        };
        enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    }
    tx.commit().await?;
    app.product_cache.forget(id);
    Ok(Json(p))
}
