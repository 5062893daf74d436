//! ML: candle models, training, evaluation, model registry and arroy indexes. Filled by the ML issue.
//!
//! This crate is an empty shell today: it exists so the workspace layout of
//! ARCHITECTURE.md is in place; nothing here is implemented yet.
