//! Reading a cart priced from the catalog.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use events::{Currency, Money, Quantity, Sku};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::pricing::store::Promotion;

/// What a cart line needs of its product.
struct Priced {
    sku: Sku,
    category: String,
    names: BTreeMap<String, String>,
    price: Money,
    weight_grams: i32,
}

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

impl From<CartError> for crate::http::Problem {
    fn from(e: CartError) -> Self {
        match e {
            CartError::InvalidCoupon => {
                crate::http::Problem::invalid("coupon", "unknown or expired coupon")
            }
            other => crate::http::Problem::internal(other),
        }
    }
}

fn add(acc: Option<Money>, m: Money) -> Result<Option<Money>, CartError> {
    Ok(Some(match acc {
        None => m,
        Some(s) => s.checked_add(m).ok_or(CartError::MixedCurrencies)?,
    }))
}

/// The statement that reads a cart: the live promotions, and the cart's lines with their
/// products (NULL when no longer for sale), one round trip; `$1` is the user and `$2` the
/// coupon code. There is always a first row: an empty cart gives one with NULL lines, so the
/// coupon is checked all the same. `extra` adds columns to every row (a caller's questions
/// asked in the same round trip, with parameters from `$3`); [`Cart::from_rows`] reads the rest.
/// `items`, when given, replaces the user's lines as the statement reads them (product_id,
/// quantity, added_at): a statement that changes the cart reads it as it leaves it.
pub fn load_sql(extra: &str, items: Option<&str>) -> String {
    let items = items
        .unwrap_or("SELECT product_id, quantity, added_at FROM carts.items WHERE user_id = $1");
    rows_sql(
        &format!(
            "SELECT {} AS live {extra}",
            crate::pricing::store::live_json_sql("$2")
        ),
        items,
        "",
    )
}

/// Carts' rows: for each row of `base` (a query with a `live` column, the promotions as
/// [`crate::pricing::store::live_json_sql`] gives them), the lines `items` selects
/// (product_id, quantity, added_at; it may refer to `base`'s columns) with their products,
/// NULL when no longer for sale; a row of `base` without lines gives one row with NULL lines.
/// Ordered by `order` (a prefix of the ORDER BY, ending in a comma), then the lines as added.
pub(crate) fn rows_sql(base: &str, items: &str, order: &str) -> String {
    format!(
        "SELECT base.*, i.product_id, i.quantity, i.sku, i.category, i.names, i.price_minor,
                i.currency, i.weight_grams
         FROM ({base}) base
         LEFT JOIN LATERAL (
            SELECT i.product_id, i.quantity, i.added_at, p.sku, p.category, p.names,
                   p.price_minor, p.currency, p.weight_grams
            FROM ({items}) i
            -- One product by its key per line, whatever the statistics say.
            LEFT JOIN LATERAL (
                SELECT sku, category, names, price_minor, currency, weight_grams
                FROM catalog.products
                WHERE id = i.product_id AND status = 'active' LIMIT 1) p ON true) i ON true
         ORDER BY {order} i.added_at, i.product_id"
    )
}

static LOAD_SQL: LazyLock<String> = LazyLock::new(|| load_sql("", None));

/// The user's cart at current catalog prices, less live promotions (and the coupon's).
pub async fn load(pool: &PgPool, user: Uuid, coupon: Option<&str>) -> Result<Cart, CartError> {
    let code = coupon.map(crate::pricing::store::coupon_code);
    let rows = sqlx::query(sqlx::AssertSqlSafe(LOAD_SQL.as_str()))
        .bind(user)
        .bind(&code)
        .fetch_all(pool)
        .await?;
    Cart::from_rows(&rows, code)
}

impl Cart {
    /// The cart from the rows of [`load_sql`] run with the coupon code `code`.
    pub fn from_rows(rows: &[PgRow], code: Option<String>) -> Result<Cart, CartError> {
        let promos: Vec<Promotion> = match rows.first() {
            Some(row) => row.try_get::<Json<Vec<Promotion>>, _>("live")?.0,
            None => Vec::new(),
        };
        if !crate::pricing::store::coupon_is_live(code.as_deref(), &promos) {
            return Err(CartError::InvalidCoupon);
        }
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(id) = row.try_get::<Option<Uuid>, _>("product_id")? else {
                continue; // the empty cart's row
            };
            let qty: i32 = row.try_get("quantity")?;
            let product = match row.try_get::<Option<String>, _>("sku")? {
                None => None,
                Some(sku) => {
                    let decode = |e: events::ValueError| sqlx::Error::Decode(Box::new(e));
                    let currency: String = row.try_get("currency")?;
                    Some(Priced {
                        sku: Sku::parse(sku).map_err(decode)?,
                        category: row.try_get("category")?,
                        names: row.try_get::<Json<BTreeMap<String, String>>, _>("names")?.0,
                        price: Money::new(
                            row.try_get("price_minor")?,
                            Currency::parse(&currency).map_err(decode)?,
                        ),
                        weight_grams: row.try_get("weight_grams")?,
                    })
                }
            };
            items.push((id, qty, product));
        }
        Cart::priced(items, &promos, code)
    }

    fn priced(
        items: Vec<(Uuid, i32, Option<Priced>)>,
        promos: &[Promotion],
        code: Option<String>,
    ) -> Result<Cart, CartError> {
        let mut lines = Vec::new();
        let mut unavailable = Vec::new();
        let (mut subtotal, mut discount, mut total) = (None, None, None);
        let mut count = 0u32;
        for (id, qty, product) in items {
            let (Some(p), Some(quantity)) = (product, Quantity::new(qty as u32)) else {
                unavailable.push(id);
                continue;
            };
            let off =
                crate::pricing::store::best_discount(promos, id, &p.category, p.price.amount_minor);
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
                sku: p.sku,
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
            coupon: code,
            item_count: count,
        })
    }
}
