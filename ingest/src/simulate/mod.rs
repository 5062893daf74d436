//! The traffic simulator: a seeded world of products and customers, storefront sessions
//! over a simulated clock, and injected fraud with a ground-truth label log, so detection
//! can be measured. The same seed gives the same event sequence, ids included.
//!
//! Implemented: direct mode (events straight into Kafka at high rate) and live mode (events
//! at their own time, for `shopstream up`), with injected fraud and anomalies, and product
//! pictures (`images`), and the HTTP mode: shoppers and fraudsters calling the public
//! storefront APIs (`http`).

mod direct;
mod fraud;
mod http;
pub mod images;
mod live;
mod traffic;
mod world;

pub use direct::{DirectReport, run_direct};
pub use fraud::{AnomalyKind, AnomalyLabel, FraudKind, GroundTruth, Label};
pub use http::{HttpProgress, HttpReport, HttpSimConfig, HttpSimError, run_http};
pub use live::run_live;
pub use traffic::{Generator, SimConfig};
pub use world::World;
