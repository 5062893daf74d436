//! SQL over the lake for analysts: one DataFusion context per access level, tables that read
//! the latest Delta version on every scan, read-only (DDL, DML and other statements refused),
//! a per-query timeout and memory limit, PII masking by role and an audit line per statement.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::ops::Not as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableProviderFilterPushDown, col};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use deltalake::DeltaTable;
use serde::{Deserialize, Serialize};

use crate::lake::{Lake, Layer};
use crate::{WarehouseConfig, WarehouseError};

/// The catalog analysts see; `gold` is its default schema.
pub const CATALOG: &str = "shopstream";

/// The warm offsets of some partitions, as of one warm table version.
type CommittedAt = (Option<u64>, Vec<i32>, HashMap<i32, i64>);

/// A table version's Parquet listing (`None`: that version cannot be read as one).
type ListingAt = (Option<u64>, Option<Arc<ListingTable>>);

/// A Delta table that scans its latest committed version (so SQL sees new loads at once),
/// together with its cold tier when it has one (see [`crate::tiers`]): warm rows not yet in
/// cold, plus the cold rows.
#[derive(Debug)]
pub struct LiveTable {
    table: tokio::sync::Mutex<DeltaTable>,
    schema: SchemaRef,
    cold_path: Option<std::path::PathBuf>,
    cold: tokio::sync::Mutex<Option<DeltaTable>>,
    hot: Option<Arc<std::sync::Mutex<crate::hot::HotFamily>>>,
    /// Reading app transactions replays the Delta log, so what a scan needs of them is kept
    /// per table version: the cold boundary (by cold version) and the warm offsets (by warm
    /// version and partitions asked for).
    boundary_at: std::sync::Mutex<Option<(Option<u64>, crate::tiers::Boundary)>>,
    committed_at: std::sync::Mutex<Option<CommittedAt>>,
    /// A table with no other tier, readable as plain Parquet files ([`plain_parquet`]), is
    /// scanned as a Parquet listing over its version's data files, made once per version.
    listing: std::sync::Mutex<Option<ListingAt>>,
}

impl LiveTable {
    pub async fn new(table: DeltaTable) -> Result<Self, WarehouseError> {
        let schema = table.table_provider().await?.schema();
        Ok(LiveTable {
            table: tokio::sync::Mutex::new(table),
            schema,
            cold_path: None,
            cold: tokio::sync::Mutex::new(None),
            hot: None,
            boundary_at: std::sync::Mutex::new(None),
            committed_at: std::sync::Mutex::new(None),
            listing: std::sync::Mutex::new(None),
        })
    }

    /// `warm` as a Parquet listing over exactly its version's data files, in this table's
    /// schema, or `None` when a listing would misread it (see [`plain_parquet`]).
    ///
    /// DataFusion's own Parquet scan, without the Delta provider's per-row file-id column and
    /// its second application of the filters: the analysts' top-N over 10M order lines took
    /// about half the time (docs/decisions.md).
    async fn listing(
        &self,
        warm: &DeltaTable,
        state: &dyn Session,
    ) -> DfResult<Option<Arc<ListingTable>>> {
        let version = warm.version();
        if let Some((v, l)) = self.listing.lock().ok().and_then(|l| l.clone())
            && v == version
        {
            return Ok(l);
        }
        let urls = match plain_parquet(warm) {
            Ok(()) => data_files(warm).map_err(|e| DataFusionError::External(Box::new(e)))?,
            Err(_) => Vec::new(),
        };
        // A table with no data file yet keeps the provider, which knows its schema.
        let listing = if urls.is_empty() {
            None
        } else {
            let format =
                ParquetFormat::default().with_options(state.default_table_options().parquet);
            let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(self.schema.clone());
            Some(Arc::new(ListingTable::try_new(config)?))
        };
        if let Ok(mut l) = self.listing.lock() {
            *l = Some((version, listing.clone()));
        }
        Ok(listing)
    }

    /// Spans the cold table at `path` too, once it exists.
    pub fn with_cold(mut self, path: std::path::PathBuf) -> Self {
        self.cold_path = Some(path);
        self
    }

    /// Feeds this (bronze) table's scans with the hot rows the warm table does not have yet.
    pub fn with_hot(mut self, family: Arc<std::sync::Mutex<crate::hot::HotFamily>>) -> Self {
        self.hot = Some(family);
        self
    }

    /// The hot rows past the offsets recorded in `warm`, in this table's schema.
    async fn hot_rows(&self, warm: &DeltaTable) -> Result<Vec<RecordBatch>, WarehouseError> {
        let Some(family) = &self.hot else {
            return Ok(Vec::new());
        };
        let (topic, partitions) = {
            let f = family
                .lock()
                .map_err(|_| WarehouseError::Busy("hot tier poisoned".into()))?;
            (f.topic.clone(), f.partitions())
        };
        let cached = self.committed_at.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(v, ps, _)| *v == warm.version() && *ps == partitions)
                .map(|(_, _, m)| m.clone())
        });
        let committed = match cached {
            Some(m) => m,
            None => {
                let snapshot = warm.snapshot()?;
                let mut committed = HashMap::new();
                for p in &partitions {
                    let app = crate::bronze::app_id(&topic, *p);
                    if let Some(v) = snapshot
                        .transaction_version(warm.log_store().as_ref(), app)
                        .await?
                    {
                        committed.insert(*p, v);
                    }
                }
                if let Ok(mut c) = self.committed_at.lock() {
                    *c = Some((warm.version(), partitions, committed.clone()));
                }
                committed
            }
        };
        let rows = family
            .lock()
            .map_err(|_| WarehouseError::Busy("hot tier poisoned".into()))?
            .rows_after(&committed);
        rows.iter()
            .map(|b| {
                let cols = b
                    .columns()
                    .iter()
                    .zip(self.schema.fields())
                    .map(|(c, f)| cast(c, f.data_type()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
            })
            .collect()
    }

    /// The boundary recorded in `cold`, read once per cold version.
    async fn boundary(&self, cold: &DeltaTable) -> Result<crate::tiers::Boundary, WarehouseError> {
        let cached = self.boundary_at.lock().ok().and_then(|b| {
            b.as_ref()
                .filter(|(v, _)| *v == cold.version())
                .map(|(_, b)| b.clone())
        });
        if let Some(b) = cached {
            return Ok(b);
        }
        let b = crate::tiers::Boundary::of(cold).await?;
        if let Ok(mut c) = self.boundary_at.lock() {
            *c = Some((cold.version(), b.clone()));
        }
        Ok(b)
    }

    async fn cold_table(&self) -> DfResult<Option<DeltaTable>> {
        let Some(path) = &self.cold_path else {
            return Ok(None);
        };
        if !path.join("_delta_log").is_dir() {
            return Ok(None);
        }
        let ext = |e: deltalake::DeltaTableError| DataFusionError::External(Box::new(e));
        let mut guard = self.cold.lock().await;
        match guard.as_mut() {
            Some(t) => t.update_incremental(None).await.map_err(ext)?,
            None => {
                let url = deltalake::ensure_table_uri(path.to_string_lossy()).map_err(ext)?;
                *guard = Some(deltalake::open_table(url).await.map_err(ext)?);
            }
        }
        Ok(guard.clone())
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (provider, warm) = {
            let mut table = self.table.lock().await;
            table
                .update_incremental(None)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            (table.table_provider().await?, table.clone())
        };
        if provider.schema() != self.schema {
            return Err(DataFusionError::Plan(
                "the table's schema changed since it was registered; run the query again".into(),
            ));
        }
        let ext = |e: WarehouseError| DataFusionError::External(Box::new(e));
        let cold = self.cold_table().await?;
        let boundary = match &cold {
            Some(c) => Some(self.boundary(c).await.map_err(ext)?),
            None => None,
        }
        .filter(|b| b.cutoff.is_some());
        if self.cold_path.is_none()
            && self.hot.is_none()
            && let Some(listing) = self.listing(&warm, state).await?
        {
            return listing.scan(state, projection, filters, limit).await;
        }
        let hot = self.hot_rows(&warm).await.map_err(ext)?;
        if boundary.is_none() && hot.is_empty() {
            return provider.scan(state, projection, filters, limit).await;
        }
        // Filters and limit are applied above this scan (they are inexact here).
        let columns: Vec<Expr> = match projection {
            Some(p) => p
                .iter()
                .map(|i| col(self.schema.field(*i).name()))
                .collect(),
            None => self.schema.fields().iter().map(|f| col(f.name())).collect(),
        };
        let mut plan = LogicalPlanBuilder::scan("warm", provider_as_source(provider), None)?;
        if let Some(b) = &boundary {
            plan = plan.filter(b.in_cold().not())?;
        }
        let mut plan = plan.project(columns.clone())?;
        if let (Some(cold), Some(_)) = (cold, &boundary) {
            cold.update_datafusion_session(state)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let cold = LogicalPlanBuilder::scan(
                "cold",
                provider_as_source(cold.table_provider().await?),
                None,
            )?
            .project(columns.clone())?
            .build()?;
            plan = plan.union(cold)?;
        }
        if !hot.is_empty() {
            let mem = MemTable::try_new(self.schema.clone(), vec![hot])?;
            let hot = LogicalPlanBuilder::scan("hot", provider_as_source(Arc::new(mem)), None)?
                .project(columns)?
                .build()?;
            plan = plan.union(hot)?;
        }
        state.create_physical_plan(&plan.build()?).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Files are skipped by their statistics; DataFusion still applies the filter.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// Why `table`'s current version cannot be read as plain Parquet files, if it cannot: it
/// needs Delta reader protocol 2 or more (deletion vectors, column mapping), or it is
/// partitioned (partition values live in the paths and the log, not in the files).
pub(crate) fn plain_parquet(table: &DeltaTable) -> Result<(), String> {
    let snapshot = table.snapshot().map_err(|e| e.to_string())?;
    let protocol = serde_json::to_value(snapshot.protocol()).map_err(|e| e.to_string())?;
    let reader = protocol["minReaderVersion"].as_i64().unwrap_or(i64::MAX);
    if reader > 1 {
        return Err(format!(
            "it needs Delta reader protocol {reader} (deletion vectors or column mapping)"
        ));
    }
    let metadata = serde_json::to_value(snapshot.metadata()).map_err(|e| e.to_string())?;
    match metadata["partitionColumns"].as_array() {
        Some(cols) if cols.is_empty() => Ok(()),
        Some(_) => Err("it is partitioned".into()),
        None => Err("its metadata has no partitionColumns".into()),
    }
}

/// The data files of `table`'s current version (files an overwrite removed are not among
/// them, so a listing over these reads each row once).
pub(crate) fn data_files(table: &DeltaTable) -> Result<Vec<ListingTableUrl>, WarehouseError> {
    Ok(table
        .get_file_uris()?
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Registers `table` as `<schema>.<name>` in the context's default catalog.
pub async fn register(
    ctx: &SessionContext,
    schema: &str,
    name: &str,
    table: &DeltaTable,
) -> Result<(), WarehouseError> {
    register_tiered(ctx, schema, name, table, None).await
}

/// [`register`], spanning the cold table at `cold` too (bronze tables).
pub async fn register_tiered(
    ctx: &SessionContext,
    schema: &str,
    name: &str,
    table: &DeltaTable,
    cold: Option<std::path::PathBuf>,
) -> Result<(), WarehouseError> {
    register_with(ctx, schema, name, table, cold, None).await
}

/// [`register_tiered`], with the table's hot rows too.
pub async fn register_with(
    ctx: &SessionContext,
    schema: &str,
    name: &str,
    table: &DeltaTable,
    cold: Option<std::path::PathBuf>,
    hot: Option<Arc<std::sync::Mutex<crate::hot::HotFamily>>>,
) -> Result<(), WarehouseError> {
    let catalog_name = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let catalog = ctx
        .catalog(&catalog_name)
        .ok_or_else(|| DataFusionError::Plan(format!("no catalog {catalog_name}")))?;
    let provider = match catalog.schema(schema) {
        Some(s) => s,
        None => {
            let s = Arc::new(MemorySchemaProvider::new());
            catalog.register_schema(schema, s.clone())?;
            s
        }
    };
    table.update_datafusion_session(&ctx.state())?;
    let mut live = LiveTable::new(table.clone()).await?;
    if let Some(cold) = cold {
        live = live.with_cold(cold);
    }
    if let Some(hot) = hot {
        live = live.with_hot(hot);
    }
    // A table registered again (a model rebuilt within one build) replaces the old provider.
    let _ = provider.deregister_table(name)?;
    provider.register_table(name.to_owned(), Arc::new(live))?;
    Ok(())
}

/// Registers every existing table of a layer under the layer's name.
pub async fn register_layer(
    ctx: &SessionContext,
    lake: &Lake,
    layer: Layer,
) -> Result<usize, WarehouseError> {
    let names = lake.tables(layer);
    for name in &names {
        let table = lake.open(layer, name).await?;
        let cold = (layer == Layer::Bronze).then(|| lake.path(Layer::Cold, name));
        register_tiered(ctx, layer.name(), name, &table, cold).await?;
    }
    Ok(names.len())
}

/// Who is asking, which decides what they see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Gold models only, with PII masked.
    Analyst,
    /// Everything, bronze and silver included.
    Admin,
}

/// Why a query did not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the warehouse is read-only: {0}")]
    ReadOnly(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the query ran longer than {0:?} and was cancelled")]
    Timeout(Duration),
    #[error("the query failed: {0}")]
    Failed(String),
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// A data set registered from outside the lake (`shopstream warehouse attach`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: String,
    pub path: String,
    /// parquet, csv or delta.
    pub format: String,
}

const ATTACHED_FILE: &str = "attached.json";

/// The SQL front of the warehouse.
pub struct SqlEngine {
    lake: Lake,
    hot: Option<Arc<crate::hot::HotTier>>,
    analyst: SessionContext,
    admin: SessionContext,
    timeout: Duration,
    audit: Audit,
}

impl SqlEngine {
    /// Opens the lake's tables for querying.
    pub async fn open(lake: Lake, cfg: &WarehouseConfig) -> Result<Arc<SqlEngine>, WarehouseError> {
        Self::open_with_hot(lake, cfg, None).await
    }

    /// [`SqlEngine::open`], with bronze tables spanning the hot tier too.
    pub async fn open_with_hot(
        lake: Lake,
        cfg: &WarehouseConfig,
        hot: Option<Arc<crate::hot::HotTier>>,
    ) -> Result<Arc<SqlEngine>, WarehouseError> {
        let engine = SqlEngine {
            analyst: context(cfg)?,
            admin: context(cfg)?,
            timeout: Duration::from_secs(cfg.query_timeout_secs.max(1)),
            audit: Audit::open(&lake)?,
            lake,
            hot,
        };
        engine.refresh().await?;
        Ok(Arc::new(engine))
    }

    pub fn context(&self, access: Access) -> &SessionContext {
        match access {
            Access::Analyst => &self.analyst,
            Access::Admin => &self.admin,
        }
    }

    /// Registers tables that appeared since the last refresh (new models, attachments).
    pub async fn refresh(&self) -> Result<(), WarehouseError> {
        for layer in Layer::ALL {
            for name in self.lake.tables(layer) {
                let registered = |ctx: &SessionContext| {
                    ctx.catalog(CATALOG)
                        .and_then(|c| c.schema(layer.name()))
                        .is_some_and(|s| s.table_exist(&name))
                };
                let for_analyst = layer == Layer::Gold;
                if registered(&self.admin) && (!for_analyst || registered(&self.analyst)) {
                    continue;
                }
                let table = self.lake.open(layer, &name).await?;
                let cold = (layer == Layer::Bronze).then(|| self.lake.path(Layer::Cold, &name));
                let hot = match (&self.hot, layer) {
                    (Some(h), Layer::Bronze) => h.family(&name),
                    _ => None,
                };
                register_with(&self.admin, layer.name(), &name, &table, cold, hot).await?;
                if for_analyst {
                    register(&self.analyst, layer.name(), &name, &table).await?;
                }
            }
        }
        for a in self.attachments() {
            for ctx in [&self.analyst, &self.admin] {
                let exists = ctx
                    .catalog(CATALOG)
                    .and_then(|c| c.schema("ext"))
                    .is_some_and(|s| s.table_exist(&a.name));
                if !exists {
                    attach_to(ctx, &a).await?;
                }
            }
        }
        Ok(())
    }

    /// The attachments on record.
    pub fn attachments(&self) -> Vec<Attachment> {
        read_attachments(&self.lake)
    }

    /// Runs one read-only statement.
    pub async fn query(
        &self,
        sql: &str,
        who: &str,
        access: Access,
    ) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "warehouse: refreshing the catalog failed");
        }
        let result = run_read_only(self.context(access), sql, self.timeout).await;
        self.audit.record(who, access, sql, started, &result);
        result
    }

    /// Appends one line to `<dir>/audit.jsonl` (and the log).
    pub fn audit(
        &self,
        who: &str,
        access: Access,
        sql: &str,
        outcome: &str,
        rows: usize,
        took: Duration,
    ) {
        self.audit.write(who, access, sql, outcome, rows, took);
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }
}

/// Plans `sql` in `ctx`, refuses anything but a query, runs it within `timeout`.
pub(crate) async fn run_read_only(
    ctx: &SessionContext,
    sql: &str,
    timeout: Duration,
) -> Result<QueryResult, QueryError> {
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
    read_only(&plan)?;
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = tokio::time::timeout(timeout, df.collect())
        .await
        .map_err(|_| QueryError::Timeout(timeout))?
        .map_err(|e| QueryError::Failed(e.strip_backtrace()))?;
    Ok(QueryResult { schema, batches })
}

/// Refuses DDL, DML and other statements: the warehouse is read-only for every SQL front.
fn read_only(plan: &datafusion::logical_expr::LogicalPlan) -> Result<(), QueryError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| QueryError::ReadOnly(e.strip_backtrace()))
}

/// The audit trail: one JSON line per statement in `<dir>/audit.jsonl`.
pub(crate) struct Audit(Mutex<std::fs::File>);

impl Audit {
    pub(crate) fn open(lake: &Lake) -> Result<Audit, WarehouseError> {
        std::fs::create_dir_all(lake.root())?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(lake.root().join("audit.jsonl"))?;
        Ok(Audit(Mutex::new(file)))
    }

    /// The line for a statement that started at `started` and ended with `result`.
    pub(crate) fn record(
        &self,
        who: &str,
        access: Access,
        sql: &str,
        started: Instant,
        result: &Result<QueryResult, QueryError>,
    ) {
        let (outcome, rows) = match result {
            Ok(r) => ("ok".to_owned(), r.rows()),
            Err(e) => (e.to_string(), 0),
        };
        self.write(who, access, sql, &outcome, rows, started.elapsed());
    }

    pub(crate) fn write(
        &self,
        who: &str,
        access: Access,
        sql: &str,
        outcome: &str,
        rows: usize,
        took: Duration,
    ) {
        let line = serde_json::json!({
            "at": chrono::Utc::now(),
            "who": who,
            "access": access,
            "sql": sql,
            "outcome": outcome,
            "rows": rows,
            "ms": took.as_secs_f64() * 1e3,
        });
        tracing::debug!(who, ?access, rows, outcome, "warehouse query");
        if let Ok(mut f) = self.0.lock() {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn context(cfg: &WarehouseConfig) -> Result<SessionContext, WarehouseError> {
    // DataFusion's own `DATAFUSION_*` variables (e.g. DATAFUSION_EXECUTION_TARGET_PARTITIONS)
    // tune every SQL context; ours below are defaults they override.
    let mut config = SessionConfig::from_env()?
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG, Layer::Gold.name())
        .with_create_default_catalog_and_schema(true);
    let unset = |var: &str| std::env::var_os(var).is_none();
    // Evaluate filters while decoding Parquet (skips the rows and pages they exclude).
    if unset("DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS") {
        config.options_mut().execution.parquet.pushdown_filters = true;
    }
    if unset("DATAFUSION_EXECUTION_PARQUET_REORDER_FILTERS") {
        config.options_mut().execution.parquet.reorder_filters = true;
    }
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(cfg.query_memory_mb.max(64) << 20, 1.0)
        .build_arc()?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(crate::deadline::Deadline(Duration::from_secs(
            cfg.query_timeout_secs.max(1),
        ))))
        .build();
    Ok(SessionContext::new_with_state(state))
}

fn read_attachments(lake: &Lake) -> Vec<Attachment> {
    std::fs::read(lake.root().join(ATTACHED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

async fn attach_to(ctx: &SessionContext, a: &Attachment) -> Result<(), WarehouseError> {
    let table = format!("{CATALOG}.ext.{}", a.name);
    let catalog = ctx
        .catalog(CATALOG)
        .ok_or_else(|| DataFusionError::Plan("no catalog".into()))?;
    if catalog.schema("ext").is_none() {
        catalog.register_schema("ext", Arc::new(MemorySchemaProvider::new()))?;
    }
    match a.format.as_str() {
        "parquet" => {
            ctx.register_parquet(&table, &a.path, Default::default())
                .await?
        }
        "csv" => {
            ctx.register_csv(&table, &a.path, Default::default())
                .await?
        }
        "delta" => {
            let url = deltalake::ensure_table_uri(&a.path)?;
            let t = deltalake::open_table(url).await?;
            t.update_datafusion_session(&ctx.state())?;
            let provider = Arc::new(LiveTable::new(t).await?);
            catalog
                .schema("ext")
                .expect("registered above")
                .register_table(a.name.clone(), provider)?;
        }
        other => {
            return Err(WarehouseError::Busy(format!(
                "unknown format {other}: use parquet, csv or delta"
            )));
        }
    }
    Ok(())
}

/// Registers an outside data set as `ext.<name>` for every engine that opens the lake later
/// (and checks now that it can be read).
pub async fn attach(lake: &Lake, a: Attachment) -> Result<SchemaRef, WarehouseError> {
    if a.name.is_empty()
        || !a
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(WarehouseError::Busy(format!(
            "bad name {:?}: use letters, digits and _",
            a.name
        )));
    }
    let ctx = context(&WarehouseConfig::default())?;
    attach_to(&ctx, &a).await?;
    let schema = ctx
        .table_provider(format!("{CATALOG}.ext.{}", a.name).as_str())
        .await?
        .schema();
    std::fs::create_dir_all(lake.root())?;
    let mut all = read_attachments(lake);
    all.retain(|x| x.name != a.name);
    all.push(a);
    std::fs::write(
        lake.root().join(ATTACHED_FILE),
        serde_json::to_vec_pretty(&all).unwrap_or_default(),
    )?;
    Ok(schema)
}
