//! Reading a cart priced from the catalog.

use events::{Money, Quantity, Sku};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::catalog::store::products_by_id;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartLine {
    pub product_id: Uuid,
    pub sku: Sku,
    pub title: String,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
    pub weight_grams: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    /// Products in the cart that can no longer be bought.
    pub unavailable: Vec<Uuid>,
    pub subtotal: Option<Money>,
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
}

/// The user's cart at current catalog prices.
pub async fn load(pool: &PgPool, user: Uuid) -> Result<Cart, CartError> {
    let items: Vec<(Uuid, i32)> =
        sqlx::query_as("SELECT product_id, quantity FROM carts.items WHERE user_id = $1 ORDER BY added_at, product_id")
            .bind(user)
            .fetch_all(pool)
            .await?;
    let ids: Vec<Uuid> = items.iter().map(|i| i.0).collect();
    let products = products_by_id(pool, &ids).await?;
    let mut lines = Vec::new();
    let mut unavailable = Vec::new();
    let mut subtotal: Option<Money> = None;
    let mut count = 0u32;
    for (id, qty) in items {
        let (Some(p), Some(quantity)) = (
            products.iter().find(|p| p.id == id),
            Quantity::new(qty as u32),
        ) else {
            unavailable.push(id);
            continue;
        };
        let line_total = p
            .price
            .checked_mul(quantity.get())
            .ok_or(CartError::Overflow)?;
        subtotal = Some(match subtotal {
            None => line_total,
            Some(s) => s
                .checked_add(line_total)
                .ok_or(CartError::MixedCurrencies)?,
        });
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
            line_total,
            weight_grams: p.weight_grams.max(0) as u32,
        });
    }
    Ok(Cart {
        lines,
        unavailable,
        subtotal,
        item_count: count,
    })
}
