//! Stream processors: event-time windowed aggregation, fraud detection, anomaly detection, with checkpointed state. Filled by the stream-processing issue.
//!
//! This crate is an empty shell today: it exists so the workspace layout of
//! ARCHITECTURE.md is in place; nothing here is implemented yet.
