//! Reading a cart priced from the catalog.

use events::{Money, Quantity, Sku};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::catalog::store::products_by_id;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CartLine {
    pub product_id: Uuid,
    pub sku: Sku,
    pub title: String,
    #[schema(value_type = u32, minimum = 1)]
    pub quantity: Quantity,
    /// Catalog price of one unit.
    pub unit_price: Money,
    /// Promotion discount on one unit.
    pub unit_discount: Money,
    /// (unit price - unit discount) x quantity.
    pub line_total: Money,
    pub weight_grams: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    /// Products in the cart that can no longer be bought.
    pub unavailable: Vec<Uuid>,
    /// Before discounts.
    pub subtotal: Option<Money>,
    pub discount: Option<Money>,
    /// After discounts, before shipping.
    pub total: Option<Money>,
    pub coupon: Option<String>,
    pub item_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("the cart mixes currencies; it cannot be priced")]
    MixedCurrencies,
    #[error("amount overflow")]
    Overflow,
    #[error("unknown or expired coupon")]
    InvalidCoupon,
}

fn add(acc: Option<Money>, m: Money) -> Result<Option<Money>, CartError> {
    Ok(Some(match acc {
        None => m,
        Some(s) => s.checked_add(m).ok_or(CartError::MixedCurrencies)?,
    }))
}

/// The user's cart at current catalog prices, less live promotions (and the coupon's).
pub async fn load(pool: &PgPool, user: Uuid, coupon: Option<&str>) -> Result<Cart, CartError> {
    let promos = crate::pricing::store::live(pool, coupon)
        .await?
        .map_err(|()| CartError::InvalidCoupon)?;
    let items: Vec<(Uuid, i32)> =
        sqlx::query_as("SELECT product_id, quantity FROM carts.items WHERE user_id = $1 ORDER BY added_at, product_id")
            .bind(user)
            .fetch_all(pool)
            .await?;
    let ids: Vec<Uuid> = items.iter().map(|i| i.0).collect();
    let products = products_by_id(pool, &ids).await?;
    let mut lines = Vec::new();
    let mut unavailable = Vec::new();
    let (mut subtotal, mut discount, mut total) = (None, None, None);
    let mut count = 0u32;
    for (id, qty) in items {
        let (Some(p), Some(quantity)) = (
            products.iter().find(|p| p.id == id),
            Quantity::new(qty as u32),
        ) else {
            unavailable.push(id);
            continue;
        };
        let off =
            crate::pricing::store::best_discount(&promos, p.id, &p.category, p.price.amount_minor);
        let unit_discount = Money::new(off, p.price.currency);
        let gross = p
            .price
            .checked_mul(quantity.get())
            .ok_or(CartError::Overflow)?;
        let line_discount = unit_discount
            .checked_mul(quantity.get())
            .ok_or(CartError::Overflow)?;
        let line_total = Money::new(p.price.amount_minor - off, p.price.currency)
            .checked_mul(quantity.get())
            .ok_or(CartError::Overflow)?;
        subtotal = add(subtotal, gross)?;
        discount = add(discount, line_discount)?;
        total = add(total, line_total)?;
        count += quantity.get();
        lines.push(CartLine {
            product_id: id,
            sku: p.sku.clone(),
            title: p
                .names
                .get("en")
                .or_else(|| p.names.values().next())
                .cloned()
                .unwrap_or_default(),
            quantity,
            unit_price: p.price,
            unit_discount,
            line_total,
            weight_grams: p.weight_grams.max(0) as u32,
        });
    }
    Ok(Cart {
        lines,
        unavailable,
        subtotal,
        discount,
        total,
        coupon: coupon.map(|c| c.trim().to_uppercase()),
        item_count: count,
    })
}
