//! The warehouse: Kafka → bronze Delta tables (exactly once), silver (typed, deduplicated)
//! and gold (curated models) built by `shopstream warehouse build`, and SQL for analysts over
//! the PostgreSQL wire protocol and `POST /v1/sql`.
//!
//! Layout on disk is [`lake::Lake`]; the loader is [`bronze::run_loader`]; the models are
//! [`models::build`] (two of them Polars jobs, [`batch`]); queries go through [`sql::SqlEngine`], which is read-only, bounded in
//! time and memory, masks PII for analysts and audits every statement; the same SQL runs
//! on Ballista through [`distributed::BallistaSql`].

pub mod batch;
pub mod bronze;
pub mod deadline;
pub mod distributed;
pub mod hot;
pub mod http;
pub mod lake;
pub mod models;
pub mod pgwire;
pub mod sql;
pub mod tiers;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use datafusion;
pub use deltalake;
pub use lake::{Lake, Layer};

/// `[warehouse]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarehouseConfig {
    /// Where the Delta tables live.
    pub dir: PathBuf,
    /// The loader commits after this many rows...
    pub batch_rows: usize,
    /// ...or this many milliseconds after the first (bronze freshness).
    pub commit_interval_ms: u64,
    /// PostgreSQL wire-protocol listener for analysts' tools (psql, DBeaver, BI).
    pub pg_addr: String,
    /// Longest a query may run.
    pub query_timeout_secs: u64,
    /// Memory a query may use before it spills or fails.
    pub query_memory_mb: usize,
    /// Rebuild the models this often while running (`up`); 0 turns it off.
    pub build_interval_secs: u64,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            dir: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".local/share/shopstream/warehouse"),
            batch_rows: 100_000,
            commit_interval_ms: 1_000,
            pg_addr: "127.0.0.1:5433".into(),
            query_timeout_secs: 60,
            query_memory_mb: 2048,
            build_interval_secs: 60,
        }
    }
}

/// `host:port` split, the port parsed.
pub(crate) fn host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// What can go wrong in the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("delta: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("arrow: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("query: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Kafka(#[from] ingest::kafka::KafkaError),
    #[error("kafka: {0}")]
    Rdkafka(#[from] rdkafka::error::KafkaError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Busy(String),
    #[error("warehouse task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
}
