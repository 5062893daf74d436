//! Warehouse: Delta Lake tiers (hot/warm/cold), loaders, curated models and SQL servers for analysts. Filled by the warehouse issue.
//!
//! This crate is an empty shell today: it exists so the workspace layout of
//! ARCHITECTURE.md is in place; nothing here is implemented yet.
