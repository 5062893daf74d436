//! Which promotion applies to a product, and the discount it gives.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Promotion {
    pub id: Uuid,
    pub name: String,
    /// `percent` or `fixed`.
    pub kind: String,
    /// Percent (1-100) or minor units off each unit.
    pub value: i64,
    pub product_id: Option<Uuid>,
    pub category: Option<String>,
    pub coupon_code: Option<String>,
}

impl Promotion {
    /// Minor units off one unit priced `unit_minor` (never more than the price).
    pub fn discount(&self, unit_minor: i64) -> i64 {
        let off = match self.kind.as_str() {
            "percent" => unit_minor.saturating_mul(self.value) / 100,
            _ => self.value,
        };
        off.clamp(0, unit_minor)
    }

    fn applies(&self, product: Uuid, category: &str) -> bool {
        self.product_id.is_none_or(|p| p == product)
            && self.category.as_deref().is_none_or(|c| c == category)
    }
}

/// Live promotions (the automatic ones, plus the coupon's when the SQL expression `coupon`
/// names a live one) as one JSON array: a scalar subquery for a caller's statement, so that
/// a cart reads its prices and promotions in one round trip. Bind the code as
/// [`coupon_code`] gives it.
pub fn live_json_sql(coupon: &str) -> String {
    format!(
        "(SELECT coalesce(json_agg(p ORDER BY p.id), '[]') FROM (
            SELECT id, name, kind, value, product_id, category, coupon_code FROM pricing.promotions
            WHERE active AND now() >= starts_at AND now() < ends_at
              AND (coupon_code IS NULL OR coupon_code = {coupon})) p)"
    )
}

/// A coupon code as promotions store it.
pub fn coupon_code(coupon: &str) -> String {
    coupon.trim().to_uppercase()
}

/// False when a coupon was given and none of the live promotions is its (it is unknown,
/// inactive or outside its dates).
pub fn coupon_is_live(coupon: Option<&str>, live: &[Promotion]) -> bool {
    coupon.is_none() || live.iter().any(|p| p.coupon_code.is_some())
}

/// The best discount per unit among `promos` for a product.
pub fn best_discount(promos: &[Promotion], product: Uuid, category: &str, unit_minor: i64) -> i64 {
    promos
        .iter()
        .filter(|p| p.applies(product, category))
        .map(|p| p.discount(unit_minor))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promo(kind: &str, value: i64, product: Option<Uuid>, category: Option<&str>) -> Promotion {
        Promotion {
            id: Uuid::nil(),
            name: "p".into(),
            kind: kind.into(),
            value,
            product_id: product,
            category: category.map(str::to_owned),
            coupon_code: None,
        }
    }

    #[test]
    fn the_best_applicable_discount_wins_and_never_exceeds_the_price() {
        let shirt = Uuid::from_u128(1);
        let promos = [
            promo("percent", 10, None, None),
            promo("fixed", 300, Some(shirt), None),
            promo("percent", 50, None, Some("toys")),
        ];
        assert_eq!(best_discount(&promos, shirt, "apparel", 1999), 300);
        assert_eq!(
            best_discount(&promos, Uuid::from_u128(2), "apparel", 1999),
            199
        );
        assert_eq!(
            best_discount(&promos, Uuid::from_u128(3), "toys", 1000),
            500
        );
        assert_eq!(promo("fixed", 5000, None, None).discount(1999), 1999);
        assert_eq!(best_discount(&[], shirt, "apparel", 1999), 0);
    }
}
