//! Catalog events: products and their prices. Keyed by product id.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Money, Sku};

/// A product attribute such as colour or material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attribute {
    pub name: String,
    pub value: String,
}

/// Whether a product can be bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    Draft,
    Active,
    Discontinued,
}

/// `product.created.v1`: a product enters the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductCreated {
    pub product_id: Uuid,
    pub sku: Sku,
    pub vendor_id: Uuid,
    pub category: String,
    pub title: String,
    pub price: Money,
    pub weight_grams: u32,
    pub attributes: Vec<Attribute>,
    pub status: ProductStatus,
}

/// `product.updated.v1`: some descriptive fields changed; absent fields are unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdated {
    pub product_id: Uuid,
    pub sku: Sku,
    pub title: Option<String>,
    pub category: Option<String>,
    pub status: Option<ProductStatus>,
    pub attributes: Option<Vec<Attribute>>,
}

/// `price.changed.v1`: the base price of a product changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceChanged {
    pub product_id: Uuid,
    pub sku: Sku,
    pub old_price: Money,
    pub new_price: Money,
    pub reason: String,
}
