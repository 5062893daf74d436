//! Reading products, for the catalog's routes and for the services that price from it.

use std::collections::BTreeMap;

use events::{Currency, Money, Sku};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// A product as the storefront sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub id: Uuid,
    pub sku: Sku,
    pub vendor_id: Uuid,
    pub category: String,
    pub names: BTreeMap<String, String>,
    pub descriptions: BTreeMap<String, String>,
    pub attributes: serde_json::Value,
    pub price: Money,
    pub weight_grams: i32,
    pub status: String,
    /// The product this one is a variant of (same item in another size, colour, ...).
    pub variant_of: Option<Uuid>,
    /// The other products of the same variant group.
    #[serde(default)]
    pub variants: Vec<Uuid>,
    /// Image URLs.
    #[serde(default)]
    pub images: Vec<String>,
}

pub(crate) const COLUMNS: &str = "id, sku, vendor_id, category, names, descriptions, attributes, price_minor, currency, weight_grams, status, variant_of";

pub(crate) fn from_row(row: &sqlx::postgres::PgRow) -> Result<Product, sqlx::Error> {
    let decode = |e: events::ValueError| sqlx::Error::Decode(Box::new(e));
    let currency: String = row.try_get("currency")?;
    Ok(Product {
        id: row.try_get("id")?,
        sku: Sku::parse(row.try_get::<String, _>("sku")?).map_err(decode)?,
        vendor_id: row.try_get("vendor_id")?,
        category: row.try_get("category")?,
        names: row.try_get::<sqlx::types::Json<_>, _>("names")?.0,
        descriptions: row.try_get::<sqlx::types::Json<_>, _>("descriptions")?.0,
        attributes: row.try_get("attributes")?,
        price: Money::new(
            row.try_get("price_minor")?,
            Currency::parse(&currency).map_err(decode)?,
        ),
        weight_grams: row.try_get("weight_grams")?,
        status: row.try_get("status")?,
        variant_of: row.try_get("variant_of")?,
        variants: Vec::new(),
        images: Vec::new(),
    })
}

/// Active products by id, for pricing a cart or an order.
pub async fn products_by_id(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Product>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM catalog.products WHERE id = ANY($1) AND status = 'active'");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Fills in image URLs and variant groups (two queries for any number of products).
pub async fn enrich(pool: &PgPool, products: &mut [Product]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = products.iter().map(|p| p.id).collect();
    let images: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT product_id, id FROM catalog.images WHERE product_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let roots: Vec<Uuid> = products
        .iter()
        .map(|p| p.variant_of.unwrap_or(p.id))
        .collect();
    let groups: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT COALESCE(variant_of, id), id FROM catalog.products
         WHERE (id = ANY($1) OR variant_of = ANY($1)) AND status = 'active' ORDER BY id",
    )
    .bind(&roots)
    .fetch_all(pool)
    .await?;
    for p in products.iter_mut() {
        p.images = images
            .iter()
            .filter(|(pid, _)| *pid == p.id)
            .map(|(pid, img)| crate::catalog::images::url(*pid, *img))
            .collect();
        let root = p.variant_of.unwrap_or(p.id);
        p.variants = groups
            .iter()
            .filter(|(r, id)| *r == root && *id != p.id)
            .map(|(_, id)| *id)
            .collect();
    }
    Ok(())
}
