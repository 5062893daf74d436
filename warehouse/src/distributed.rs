//! The analysts' SQL on Ballista, DataFusion's distributed engine, over the same gold tables.
//!
//! A query is planned here (same SQL dialect, same functions as [`crate::sql::SqlEngine`]), sent
//! to a Ballista scheduler over gRPC as a serialised logical plan, split into stages at the
//! shuffles and run by executors, which exchange stage outputs over Arrow Flight. The
//! scheduler is either started in this process with one executor
//! ([`Cluster::Standalone`], real gRPC and Flight over localhost) or a running cluster
//! ([`Cluster::Remote`], `df://host:port`).
//!
//! Ballista ships plans, not table providers, so a Delta table cannot travel as such: each
//! gold table is registered as a Parquet listing table over exactly the data files of its
//! current Delta version (files an overwrite removed are not read, so nothing is counted
//! twice), re-registered when the table moves to a new version. That is valid for tables
//! without deletion vectors or column mapping (reader protocol 1, what the gold builds write);
//! a table that needs more is refused. Executors of a remote cluster must see the lake's paths
//! (a shared file system).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista::prelude::{SessionConfigExt as _, SessionContextExt as _};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;

use crate::lake::{Lake, Layer};
use crate::sql::{Access, Audit, CATALOG, QueryError, QueryResult, run_read_only};
use crate::{WarehouseConfig, WarehouseError};

/// Where distributed queries run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// A scheduler and an executor started in this process.
    Standalone,
    /// A running Ballista scheduler, `df://host:port`.
    Remote(String),
}

impl std::str::FromStr for Cluster {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standalone" => Ok(Cluster::Standalone),
            s if s.starts_with("df://") && s.len() > "df://".len() => {
                Ok(Cluster::Remote(s.to_owned()))
            }
            s => Err(format!(
                "{s:?}: use `standalone` or a Ballista scheduler as df://host:port"
            )),
        }
    }
}

impl std::fmt::Display for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cluster::Standalone => f.write_str("standalone"),
            Cluster::Remote(url) => f.write_str(url),
        }
    }
}

/// SQL over the gold tables, run by Ballista. Read-only, time-bounded and audited like
/// [`crate::sql::SqlEngine`]; analysts' view only (gold is what analysts may read).
pub struct BallistaSql {
    lake: Lake,
    ctx: SessionContext,
    cluster: Cluster,
    timeout: Duration,
    /// The gold tables, as of the version each is registered at.
    tables: tokio::sync::Mutex<HashMap<String, DeltaTable>>,
    audit: Audit,
}

impl BallistaSql {
    /// Connects to (or starts) the cluster and registers the gold tables.
    pub async fn connect(
        lake: Lake,
        cluster: Cluster,
        cfg: &WarehouseConfig,
    ) -> Result<BallistaSql, WarehouseError> {
        let config = SessionConfig::new_with_ballista()
            .with_default_catalog_and_schema(CATALOG, Layer::Gold.name())
            .with_create_default_catalog_and_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let ctx = match &cluster {
            Cluster::Standalone => SessionContext::standalone_with_state(state).await?,
            Cluster::Remote(url) => SessionContext::remote_with_state(url, state).await?,
        };
        let engine = BallistaSql {
            audit: Audit::open(&lake)?,
            lake,
            ctx,
            cluster,
            timeout: Duration::from_secs(cfg.query_timeout_secs.max(1)),
            tables: tokio::sync::Mutex::new(HashMap::new()),
        };
        engine.refresh().await?;
        Ok(engine)
    }

    /// Registers gold tables that appeared, and re-registers those at a new Delta version.
    pub async fn refresh(&self) -> Result<(), WarehouseError> {
        let mut tables = self.tables.lock().await;
        for name in self.lake.tables(Layer::Gold) {
            // Known tables read only the log entries since their registered version.
            let table = match tables.get(&name) {
                Some(known) => {
                    let mut t = known.clone();
                    t.update_incremental(None).await?;
                    if t.version() == known.version() {
                        continue;
                    }
                    t
                }
                None => self.lake.open(Layer::Gold, &name).await?,
            };
            crate::sql::plain_parquet(&table).map_err(|why| {
                WarehouseError::Busy(format!(
                    "gold.{name} cannot be read as a plain Parquet listing: {why}"
                ))
            })?;
            let provider = self.listing(&name, &table).await?;
            let reference = format!("{CATALOG}.{}.{name}", Layer::Gold.name());
            let _ = self.ctx.deregister_table(reference.as_str())?;
            self.ctx.register_table(reference.as_str(), provider)?;
            tables.insert(name, table);
        }
        Ok(())
    }

    /// A Parquet listing over exactly the data files of `table`'s version (or, for a table
    /// with no data file yet, over an empty directory, so it plans and returns no rows).
    async fn listing(
        &self,
        name: &str,
        table: &DeltaTable,
    ) -> Result<Arc<ListingTable>, WarehouseError> {
        let urls = crate::sql::data_files(table)?;
        let files = urls.len();
        let urls = if files == 0 {
            let dir = self.lake.root().join(".ballista-empty");
            std::fs::create_dir_all(&dir)?;
            vec![ListingTableUrl::parse(format!("{}/", dir.display()))?]
        } else {
            urls
        };
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options);
        // The files' own schema where there are files (what the executors will decode), the
        // Delta schema otherwise.
        let config = if files == 0 {
            config.with_schema(table.table_provider().await?.schema())
        } else {
            config.infer_schema(&self.ctx.state()).await?
        };
        tracing::debug!(table = name, files, "ballista: gold table registered");
        Ok(Arc::new(ListingTable::try_new(config)?))
    }

    /// Runs one read-only statement on the cluster.
    pub async fn query(&self, sql: &str, who: &str) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        let result = match self.refresh().await {
            Ok(()) => run_read_only(&self.ctx, sql, self.timeout).await,
            Err(e) => Err(QueryError::Failed(format!(
                "registering the gold tables: {e}"
            ))),
        };
        let who = format!("{who} (ballista {})", self.cluster);
        self.audit
            .record(&who, Access::Analyst, sql, started, &result);
        result
    }
}

/// Runs a Ballista scheduler listening on `addr` (gRPC) until it fails or the task is dropped.
pub async fn run_scheduler(addr: std::net::SocketAddr) -> Result<(), WarehouseError> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let host = addr.ip().to_string();
    let mut config = SchedulerConfig::default()
        .with_hostname(host.clone())
        .with_port(addr.port())
        .with_scheduler_id(format!("shopstream-{addr}"));
    config.bind_host = host;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista_error)?;
    ballista_scheduler::scheduler_process::start_server(cluster, addr, Arc::new(config))
        .await
        .map_err(ballista_error)
}

fn ballista_error(e: impl std::fmt::Display) -> WarehouseError {
    WarehouseError::Busy(format!("ballista: {e}"))
}

/// Where a Ballista executor listens and which scheduler it joins.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// Host to bind and advertise.
    pub host: String,
    /// Arrow Flight port (stage outputs are fetched from here).
    pub flight_port: u16,
    /// gRPC port (the scheduler pushes tasks here).
    pub grpc_port: u16,
    /// Tasks run at once (0: every core).
    pub vcores: usize,
    /// Where stage outputs are written (default: a temporary directory).
    pub work_dir: Option<std::path::PathBuf>,
}

/// Runs a Ballista executor until it fails, is told to stop, or gets SIGTERM.
pub async fn run_executor(o: &ExecutorOptions) -> Result<(), WarehouseError> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    let (scheduler_host, scheduler_port) = crate::host_port(&o.scheduler).ok_or_else(|| {
        WarehouseError::Busy(format!(
            "bad scheduler address {:?}: use host:port",
            o.scheduler
        ))
    })?;
    let config = ExecutorProcessConfig {
        bind_host: o.host.clone(),
        external_host: Some(o.host.clone()),
        port: o.flight_port,
        grpc_port: o.grpc_port,
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: o.vcores,
        work_dir: o
            .work_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
        print_thread_info: false,
        // Heartbeats every 5 s, so the scheduler notices a lost executor quickly.
        executor_heartbeat_interval_seconds: 5,
        ..Default::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(ballista_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_addresses_parse() {
        assert_eq!("standalone".parse(), Ok(Cluster::Standalone));
        assert_eq!(
            "df://sched:50050".parse(),
            Ok(Cluster::Remote("df://sched:50050".into()))
        );
        for bad in ["", "df://", "http://x:1", "local"] {
            assert!(bad.parse::<Cluster>().is_err(), "{bad}");
        }
    }
}
