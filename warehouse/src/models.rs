//! Silver and gold, built by `shopstream warehouse build`.
//!
//! **Silver**: one table per event type (`silver.order_placed_v1`, ...), with the envelope
//! columns and the payload's fields typed by the Arrow schema the event contract derives from
//! the Rust types (`events::schema::arrow_schema_for`), partitioned by event date and
//! deduplicated by event id. A build re-derives only the dates whose bronze partitions changed
//! since the last build (late events land in their own date and make it change), and replaces
//! exactly those partitions, so it is incremental and idempotent.
//!
//! **Gold**: the curated models, SQL over silver ([`GOLD`]), built in dependency order, each in
//! one commit (readers see the old or the new version, never a mix). Facts and daily
//! aggregates are incremental by date ([`Refresh::Dates`]): a build works out which of their
//! dates the changed silver dates affect (an order confirmed today changes the row of the day
//! it was placed; a product change, the lines ordered since) and replaces only those rows.
//! Dimensions and whole-history scores ([`Refresh::Whole`]) are recomputed when what they
//! read changed. Gold owes silver's changed dates until a gold build succeeds, so a crash
//! between the two loses nothing, and a build is idempotent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::protocol::SaveMode;
use serde::{Deserialize, Serialize};

use crate::WarehouseError;
use crate::bronze::{self, DATE_COLUMN};
use crate::lake::{Lake, Layer};
use crate::sql::register_layer;

/// What a build did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// (family, dates re-derived) for silver.
    pub silver_dates: Vec<(String, usize)>,
    /// Silver rows written.
    pub silver_rows: u64,
    /// What happened to each gold model, in build order.
    pub gold: Vec<GoldBuilt>,
}

/// One gold model's part of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldBuilt {
    pub model: String,
    pub scope: Scope,
    /// Rows written (for [`Scope::Dates`], the rows of those dates only).
    pub rows: u64,
}

/// How much of a gold model a build recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Nothing it reads changed: left as it was.
    Unchanged,
    /// Only the rows of these dates (days since the epoch), replaced in one commit.
    Dates(Vec<i32>),
    /// Recomputed whole and overwritten in one commit.
    Whole,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Unchanged => f.write_str("unchanged"),
            Scope::Whole => f.write_str("rebuilt whole"),
            Scope::Dates(d) => write!(f, "{} date(s) replaced", d.len()),
        }
    }
}

/// Rows per date of each bronze table at the last build, and what gold still has to catch up
/// on.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BuildState {
    bronze_rows: BTreeMap<String, BTreeMap<i32, u64>>,
    /// Silver tables' dates re-derived since gold was last built (kept until a gold build
    /// succeeds, so a crash between the two loses nothing).
    #[serde(default)]
    pending: BTreeMap<String, BTreeSet<i32>>,
    /// A full build's silver is done but its gold is not.
    #[serde(default)]
    pending_full: bool,
    /// Fingerprint of each gold model's SQL when it was last built: a model whose SQL
    /// changed is rebuilt whole.
    #[serde(default)]
    gold_sql: BTreeMap<String, String>,
}

impl BuildState {
    fn load(path: &std::path::Path, full: bool) -> BuildState {
        match std::fs::read(path) {
            Ok(bytes) if !full => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => BuildState::default(),
        }
    }

    fn save(&self, path: &std::path::Path) -> Result<(), WarehouseError> {
        let tmp = path.with_extension("json.tmp");
        std::fs::File::create(&tmp)?
            .write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

const STATE_FILE: &str = "build-state.json";

/// The silver table of an event type: `order.placed.v1` → `order_placed_v1`.
pub fn silver_name(event_type: &str) -> String {
    event_type.replace(['.', '-'], "_")
}

/// The event types a bronze family holds (each has its silver table).
fn family_types(family: &str) -> BTreeSet<&'static str> {
    events::EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| events::Event::topic_of(t).is_some_and(|tp| bronze::table_name(tp) == family))
        .collect()
}

/// Builds silver from bronze (changed dates only, or all with `full`), then gold: each model
/// recomputes only what the changed silver dates affect (or everything with `full`).
pub async fn build(lake: &Lake, full: bool) -> Result<BuildReport, WarehouseError> {
    let mut report = BuildReport::default();
    let state_path = lake.root().join(STATE_FILE);
    let mut state = BuildState::load(&state_path, full);
    if full {
        state.pending_full = true;
    }

    let ctx = SessionContext::new();
    register_layer(&ctx, lake, Layer::Bronze).await?;
    for topic in bronze::families() {
        let table = bronze::table_name(topic);
        if !lake.exists(Layer::Bronze, &table) {
            continue;
        }
        let now = rows_per_date(&ctx, &table).await?;
        let before = state.bronze_rows.get(&table).cloned().unwrap_or_default();
        let changed: Vec<i32> = now
            .iter()
            .filter(|(d, n)| before.get(d) != Some(n))
            .map(|(d, _)| *d)
            .collect();
        if !changed.is_empty() {
            report.silver_rows += build_silver(&ctx, lake, &table, &changed).await?;
            for t in family_types(&table) {
                state
                    .pending
                    .entry(format!("silver.{}", silver_name(t)))
                    .or_default()
                    .extend(&changed);
            }
        }
        report.silver_dates.push((table.clone(), changed.len()));
        state.bronze_rows.insert(table, now);
    }
    // Silver is durable: remember what it was built from and what gold owes (a crash before
    // this line makes the next build redo the same dates, which replaces them with the same
    // rows; a crash after it, before gold is done, leaves the dates pending).
    state.save(&state_path)?;

    let changes: Changes = state
        .pending
        .iter()
        .map(|(t, d)| (t.clone(), Change::Dates(d.clone())))
        .collect();
    report.gold = build_gold(lake, changes, state.pending_full, &mut state.gold_sql).await?;
    state.pending.clear();
    state.pending_full = false;
    state.save(&state_path)?;
    Ok(report)
}

async fn rows_per_date(
    ctx: &SessionContext,
    table: &str,
) -> Result<BTreeMap<i32, u64>, WarehouseError> {
    let batches = ctx
        .sql(&format!(
            "SELECT {DATE_COLUMN}, count(*) AS n FROM bronze.{table} GROUP BY {DATE_COLUMN}"
        ))
        .await?
        .collect()
        .await?;
    let mut out = BTreeMap::new();
    for b in batches {
        let dates = b.column(0).as_primitive::<Date32Type>();
        let counts = b
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            out.insert(dates.value(i), counts.value(i) as u64);
        }
    }
    Ok(out)
}

/// Re-derives the silver tables of one family for `dates`.
async fn build_silver(
    ctx: &SessionContext,
    lake: &Lake,
    family: &str,
    dates: &[i32],
) -> Result<u64, WarehouseError> {
    let keep = dates_predicate(Some(&Change::Dates(dates.iter().copied().collect())));
    let batches = ctx
        .sql(&format!(
            "SELECT event_id, event_type, source, subject, event_time, {DATE_COLUMN}, payload \
             FROM bronze.{family} WHERE {DATE_COLUMN} {keep} \
             ORDER BY kafka_partition, kafka_offset"
        ))
        .await?
        .collect()
        .await?;
    if batches.is_empty() {
        return Ok(0);
    }
    let all = concat_batches(&batches[0].schema(), &batches)?;
    // Strings may come back as Utf8View; the codecs below and silver's schema use Utf8.
    let columns = all
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => cast(c, &DataType::Utf8),
            _ => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fields: Vec<Field> = all
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    let all = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    // Row indexes per event type, first occurrence of each event id only.
    let ids = all.column(0).as_string::<i32>();
    let types = all.column(1).as_string::<i32>();
    let mut seen: HashSet<&str> = HashSet::with_capacity(all.num_rows());
    let mut by_type: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for i in 0..all.num_rows() {
        if seen.insert(ids.value(i)) {
            by_type.entry(types.value(i)).or_default().push(i as u32);
        }
    }
    let mut written = 0u64;
    // Every event type of the family gets its table, so a date whose events all moved away
    // (none in practice) is still replaced.
    for event_type in family_types(family) {
        let rows = by_type.remove(event_type).unwrap_or_default();
        let batch = silver_batch(&all, event_type, &rows)?;
        written += batch.num_rows() as u64;
        let schema = batch.schema();
        let name = silver_name(event_type);
        let table = lake
            .open_or_create(Layer::Silver, &name, &schema, &[DATE_COLUMN])
            .await?;
        table
            .write(vec![batch])
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(dates_in(DATE_COLUMN, dates.iter()))
            .with_partition_columns([DATE_COLUMN])
            .await?;
    }
    Ok(written)
}

/// The silver schema of an event type: envelope, payload fields (Delta has no unsigned
/// integers, so those widen to signed), and the date partition.
pub fn silver_schema(event_type: &str) -> Result<SchemaRef, WarehouseError> {
    let contract = events::schema::arrow_schema_for(event_type)
        .map_err(|e| WarehouseError::Busy(e.to_string()))?;
    let mut fields: Vec<Field> = contract
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(delta_safe(f.data_type())))
        .collect();
    fields.push(Field::new(DATE_COLUMN, DataType::Date32, false));
    Ok(Arc::new(Schema::new(fields)))
}

fn delta_safe(dt: &DataType) -> DataType {
    match dt {
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::List(f) => DataType::List(Arc::new(
            f.as_ref().clone().with_data_type(delta_safe(f.data_type())),
        )),
        DataType::Struct(fs) => DataType::Struct(Fields::from(
            fs.iter()
                .map(|f| f.as_ref().clone().with_data_type(delta_safe(f.data_type())))
                .collect::<Vec<_>>(),
        )),
        other => other.clone(),
    }
}

/// Decodes the payloads of `rows` (indexes into `all`) into the typed silver columns.
fn silver_batch(
    all: &RecordBatch,
    event_type: &str,
    rows: &[u32],
) -> Result<RecordBatch, WarehouseError> {
    let schema = silver_schema(event_type)?;
    let envelope = events::schema::envelope_fields().len();
    let payload_fields: Vec<Field> = schema.fields()[envelope..schema.fields().len() - 1]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let payload_schema = Arc::new(Schema::new(payload_fields));
    let take = datafusion::arrow::array::UInt32Array::from(rows.to_vec());
    let pick = |i: usize| -> Result<ArrayRef, WarehouseError> {
        Ok(datafusion::arrow::compute::take(
            all.column(i),
            &take,
            None,
        )?)
    };
    let payloads = pick(6)?;
    let payloads = payloads.as_string::<i32>();
    let mut text = String::with_capacity(payloads.value_data().len() + rows.len());
    for p in payloads.iter() {
        text.push_str(p.unwrap_or("{}"));
        text.push('\n');
    }
    let decoded = if rows.is_empty() {
        RecordBatch::new_empty(payload_schema.clone())
    } else {
        let mut decoder = ReaderBuilder::new(payload_schema.clone())
            .with_batch_size(rows.len())
            .build_decoder()?;
        let mut buf = text.as_bytes();
        while !buf.is_empty() {
            let n = decoder.decode(buf)?;
            if n == 0 {
                break;
            }
            buf = &buf[n..];
        }
        decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(payload_schema.clone()))
    };
    // Envelope columns in contract order: id, type, source, time, subject; then payload; date.
    let mut columns: Vec<ArrayRef> = vec![pick(0)?, pick(1)?, pick(2)?, pick(4)?, pick(3)?];
    columns.extend(decoded.columns().iter().cloned());
    columns.push(pick(5)?);
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A gold model: its name, the SQL that derives it from silver (and earlier models) or that
/// selects the input of its Polars job, and how a build keeps it up to date.
pub struct Model {
    pub name: &'static str,
    pub about: &'static str,
    pub sql: &'static str,
    /// A Polars job that derives the model from the rows `sql` selects (see [`crate::batch`]).
    pub polars: Option<&'static crate::batch::PolarsJob>,
    pub refresh: Refresh,
}

/// How a build keeps a gold model up to date.
pub enum Refresh {
    /// Recomputed whole when one of these tables (`silver.x`, `gold.y`) changed: dimensions
    /// and scores over all of history, small next to the facts.
    Whole(&'static [&'static str]),
    /// Rows keyed by the date column `column`: a build recomputes only the dates the
    /// [`Affects`] name and replaces those rows (`replaceWhere`). The model's SQL may say
    /// `{DATES}` after a date column to read only those dates (`event_date {DATES}`).
    Dates {
        column: &'static str,
        affected: &'static [Affects],
    },
}

/// Which dates of a [`Refresh::Dates`] model a change touches.
pub enum Affects {
    /// The changed dates of this table, as they are (the model's date is the input's).
    Same(&'static str),
    /// The dates this query returns. In it, `{IN:table}` after a date column keeps the dates
    /// of `table` that changed, and `{SINCE:t1,t2}` keeps the dates from the earliest
    /// changed date of any of them on.
    Query(&'static str),
}

/// Commission the marketplace takes on vendors' confirmed sales (basis points).
pub const COMMISSION_BPS: i64 = 1_000;

const CATALOG_SILVER: &[&str] = &[
    "silver.product_created_v1",
    "silver.product_updated_v1",
    "silver.price_changed_v1",
];

/// The gold models in dependency order.
pub const GOLD: &[Model] = &[
    Model {
        name: "dim_product",
        about: "product versions (SCD2): attributes and price valid from..to; is_current",
        sql: include_str!("models/dim_product.sql"),
        polars: None,
        refresh: Refresh::Whole(CATALOG_SILVER),
    },
    Model {
        name: "dim_customer",
        about: "customers with PII masked (email shown as a***@domain, name hidden)",
        sql: include_str!("models/dim_customer.sql"),
        polars: None,
        refresh: Refresh::Whole(&["silver.user_registered_v1"]),
    },
    Model {
        name: "fact_orders",
        about: "one row per order: amounts, countries, status (placed/confirmed/cancelled)",
        sql: include_str!("models/fact_orders.sql"),
        polars: None,
        // An order's row is on the day it was placed, and changes when it is confirmed or
        // cancelled, often another day: the placing days of the orders any event touched.
        refresh: Refresh::Dates {
            column: "order_date",
            affected: &[Affects::Query(
                "SELECT DISTINCT event_date FROM silver.order_placed_v1 WHERE order_id IN ( \
                   SELECT order_id FROM silver.order_placed_v1 \
                     WHERE event_date {IN:silver.order_placed_v1} \
                   UNION ALL SELECT order_id FROM silver.order_confirmed_v1 \
                     WHERE event_date {IN:silver.order_confirmed_v1} \
                   UNION ALL SELECT order_id FROM silver.order_cancelled_v1 \
                     WHERE event_date {IN:silver.order_cancelled_v1})",
            )],
        },
    },
    Model {
        name: "fact_order_items",
        about: "one row per order line, with the product's category and vendor when ordered",
        sql: include_str!("models/fact_order_items.sql"),
        polars: None,
        // A product's change reaches the lines ordered at or after it.
        refresh: Refresh::Dates {
            column: "order_date",
            affected: &[
                Affects::Same("gold.fact_orders"),
                Affects::Query(
                    "SELECT DISTINCT order_date FROM gold.fact_orders WHERE order_date \
                     {SINCE:silver.product_created_v1,silver.product_updated_v1,silver.price_changed_v1}",
                ),
            ],
        },
    },
    Model {
        name: "fact_payments",
        about: "one row per payment outcome: authorized, failed (with reason) or refunded",
        sql: include_str!("models/fact_payments.sql"),
        polars: None,
        refresh: Refresh::Dates {
            column: "event_date",
            affected: &[
                Affects::Same("silver.payment_authorized_v1"),
                Affects::Same("silver.payment_failed_v1"),
                Affects::Same("silver.payment_refunded_v1"),
            ],
        },
    },
    Model {
        name: "fact_page_views",
        about: "one row per product view",
        sql: include_str!("models/fact_page_views.sql"),
        polars: None,
        refresh: Refresh::Dates {
            column: "view_date",
            affected: &[Affects::Same("silver.product_viewed_v1")],
        },
    },
    Model {
        name: "daily_revenue",
        about: "confirmed orders and revenue per day and currency",
        sql: include_str!("models/daily_revenue.sql"),
        polars: None,
        refresh: Refresh::Dates {
            column: "order_date",
            affected: &[Affects::Same("gold.fact_orders")],
        },
    },
    Model {
        name: "funnel_daily",
        about: "sessions that viewed, sessions that added to cart, orders placed, orders paid, per day",
        sql: include_str!("models/funnel_daily.sql"),
        polars: None,
        refresh: Refresh::Dates {
            column: "day",
            affected: &[
                Affects::Same("silver.product_viewed_v1"),
                Affects::Same("silver.cart_item_added_v1"),
                Affects::Same("silver.checkout_started_v1"),
                Affects::Same("gold.fact_orders"),
            ],
        },
    },
    Model {
        name: "vendor_commissions",
        about: "confirmed sales and the marketplace's commission per vendor, day and currency",
        sql: include_str!("models/vendor_commissions.sql"),
        polars: None,
        refresh: Refresh::Dates {
            column: "order_date",
            affected: &[Affects::Same("gold.fact_order_items")],
        },
    },
    Model {
        name: "cohort_retention",
        about: "customers of each first-order month still ordering N months later",
        sql: include_str!("models/cohort_retention.sql"),
        polars: Some(&crate::batch::COHORT_RETENTION),
        refresh: Refresh::Whole(&["gold.fact_orders"]),
    },
    Model {
        name: "rfm_segments",
        about: "recency, frequency and monetary scores (1-5) and a segment per customer",
        sql: include_str!("models/rfm_segments.sql"),
        polars: Some(&crate::batch::RFM_SEGMENTS),
        refresh: Refresh::Whole(&["gold.fact_orders"]),
    },
];

/// What changed in a table during this build.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    All,
    Dates(BTreeSet<i32>),
}

/// Changes by table (`silver.x`, `gold.y`); a table not in it did not change.
type Changes = HashMap<String, Change>;

fn changed(c: Option<&Change>) -> bool {
    match c {
        None => false,
        Some(Change::All) => true,
        Some(Change::Dates(d)) => !d.is_empty(),
    }
}

/// The predicate (after a date column) keeping the dates of `change`: `IN (...)`,
/// `IS NOT NULL` for all of them, `IS NULL` for none (date columns are never null).
fn dates_predicate(change: Option<&Change>) -> String {
    match change {
        Some(Change::All) => "IS NOT NULL".into(),
        Some(Change::Dates(d)) if !d.is_empty() => format!(
            "IN ({})",
            d.iter()
                .map(|d| format!("CAST({d} AS DATE)"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "IS NULL".into(),
    }
}

/// `column IN (dates)` as an expression, for `replaceWhere`.
fn dates_in<'a>(column: &str, dates: impl Iterator<Item = &'a i32>) -> Expr {
    col(column).in_list(
        dates.map(|d| lit(ScalarValue::Date32(Some(*d)))).collect(),
        false,
    )
}

/// Fills a query's `{IN:table}` and `{SINCE:t1,t2}` from `changes`.
fn render_affects(query: &str, changes: &Changes) -> Result<String, WarehouseError> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or_else(|| WarehouseError::Busy(format!("unclosed placeholder in {query:?}")))?;
        let inner = &rest[open + 1..close];
        if let Some(table) = inner.strip_prefix("IN:") {
            out.push_str(&dates_predicate(changes.get(table)));
        } else if let Some(tables) = inner.strip_prefix("SINCE:") {
            let mut since: Option<i32> = None;
            let mut all = false;
            for t in tables.split(',') {
                match changes.get(t.trim()) {
                    Some(Change::All) => all = true,
                    Some(Change::Dates(d)) => {
                        if let Some(first) = d.first() {
                            since = Some(since.map_or(*first, |s| s.min(*first)));
                        }
                    }
                    None => {}
                }
            }
            out.push_str(&match (all, since) {
                (true, _) => "IS NOT NULL".to_owned(),
                (false, Some(d)) => format!(">= CAST({d} AS DATE)"),
                (false, None) => "IS NULL".to_owned(),
            });
        } else {
            return Err(WarehouseError::Busy(format!(
                "unknown placeholder {{{inner}}} in {query:?}"
            )));
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A stable fingerprint of a model's SQL (FNV-1a), to notice a changed model.
fn fingerprint(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What a model must recompute, given what changed before it.
async fn scope_of(
    ctx: &SessionContext,
    model: &Model,
    changes: &Changes,
) -> Result<Change, WarehouseError> {
    match &model.refresh {
        Refresh::Whole(inputs) => Ok(if inputs.iter().any(|t| changed(changes.get(*t))) {
            Change::All
        } else {
            Change::Dates(BTreeSet::new())
        }),
        Refresh::Dates { affected, .. } => {
            let mut dates = BTreeSet::new();
            for a in *affected {
                match a {
                    Affects::Same(t) => match changes.get(*t) {
                        Some(Change::All) => return Ok(Change::All),
                        Some(Change::Dates(d)) => dates.extend(d),
                        None => {}
                    },
                    Affects::Query(q) => {
                        let sql = render_affects(q, changes)?;
                        for b in ctx.sql(&sql).await?.collect().await? {
                            let col = cast(b.column(0), &DataType::Date32)?;
                            let col = col.as_primitive::<Date32Type>();
                            dates.extend(col.iter().flatten());
                        }
                    }
                }
            }
            Ok(Change::Dates(dates))
        }
    }
}

/// Builds gold from silver, in order: each model recomputes what `silver` (changed dates per
/// silver table) affects, or everything with `full`, or when it is new or its SQL changed
/// (`built` holds the SQL fingerprints and is updated).
async fn build_gold(
    lake: &Lake,
    mut changes: Changes,
    full: bool,
    built: &mut BTreeMap<String, String>,
) -> Result<Vec<GoldBuilt>, WarehouseError> {
    let ctx = SessionContext::new();
    register_layer(&ctx, lake, Layer::Silver).await?;
    ensure_silver(&ctx, lake).await?;
    register_layer(&ctx, lake, Layer::Gold).await?;
    let mut out = Vec::new();
    for model in GOLD {
        let sql = model
            .sql
            .replace("{COMMISSION_BPS}", &COMMISSION_BPS.to_string());
        let print = match model.polars {
            Some(job) => fingerprint(&format!("{sql}\n{}", job.id)),
            None => fingerprint(&sql),
        };
        let fresh =
            full || !lake.exists(Layer::Gold, model.name) || built.get(model.name) != Some(&print);
        let change = if fresh {
            Change::All
        } else {
            scope_of(&ctx, model, &changes).await?
        };
        if !changed(Some(&change)) {
            out.push(GoldBuilt {
                model: model.name.to_owned(),
                scope: Scope::Unchanged,
                rows: 0,
            });
            continue;
        }
        let sql = match &model.refresh {
            Refresh::Whole(_) => sql,
            // Only the rows of the dates asked for, clustered by date so a later build's
            // replacement rewrites few files.
            Refresh::Dates { column, .. } => {
                let keep = dates_predicate(Some(&change));
                format!(
                    "SELECT * FROM (\n{}\n) WHERE {column} {keep} ORDER BY {column}",
                    sql.replace("{DATES}", &keep)
                )
            }
        };
        let df = ctx.sql(&sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        let (schema, batches) = match model.polars {
            Some(job) => {
                let out = tokio::task::spawn_blocking(move || (job.run)(schema, batches)).await??;
                (out.schema(), vec![out])
            }
            None => (schema, batches),
        };
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let table = lake
            .open_or_create(Layer::Gold, model.name, &schema, &[])
            .await?;
        let batches = if batches.is_empty() {
            vec![RecordBatch::new_empty(schema)]
        } else {
            batches
        };
        let write = table.write(batches).with_save_mode(SaveMode::Overwrite);
        let (table, scope) = match (&change, &model.refresh) {
            (Change::Dates(dates), Refresh::Dates { column, .. }) => {
                let table = write
                    .with_replace_where(dates_in(column, dates.iter()))
                    .await?;
                (table, Scope::Dates(dates.iter().copied().collect()))
            }
            _ => {
                let table = write
                    .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
                    .await?;
                (table, Scope::Whole)
            }
        };
        // Later models read earlier ones.
        crate::sql::register(&ctx, "gold", model.name, &table).await?;
        changes.insert(format!("gold.{}", model.name), change);
        built.insert(model.name.to_owned(), print);
        out.push(GoldBuilt {
            model: model.name.to_owned(),
            scope,
            rows,
        });
    }
    Ok(out)
}

/// Registers an empty silver table for every event type that has none yet, so the models'
/// SQL plans on a fresh lake.
async fn ensure_silver(ctx: &SessionContext, lake: &Lake) -> Result<(), WarehouseError> {
    let have: HashMap<String, ()> = lake
        .tables(Layer::Silver)
        .into_iter()
        .map(|n| (n, ()))
        .collect();
    for t in events::EVENT_TYPES {
        let name = silver_name(t);
        if have.contains_key(&name) {
            continue;
        }
        let table = lake
            .open_or_create(Layer::Silver, &name, &silver_schema(t)?, &[DATE_COLUMN])
            .await?;
        crate::sql::register(ctx, "silver", &name, &table).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_keep_the_changed_dates() {
        let mut changes = Changes::new();
        changes.insert("silver.a".into(), Change::Dates([20400, 20398].into()));
        changes.insert("silver.b".into(), Change::Dates(BTreeSet::new()));
        changes.insert("gold.c".into(), Change::All);
        let r = |q: &str| render_affects(q, &changes).unwrap();
        assert_eq!(
            r("d {IN:silver.a}"),
            "d IN (CAST(20398 AS DATE), CAST(20400 AS DATE))"
        );
        assert_eq!(
            r("d {IN:silver.b} OR d {IN:silver.x}"),
            "d IS NULL OR d IS NULL"
        );
        assert_eq!(r("d {IN:gold.c}"), "d IS NOT NULL");
        assert_eq!(
            r("d {SINCE:silver.b, silver.a}"),
            "d >= CAST(20398 AS DATE)"
        );
        assert_eq!(r("d {SINCE:silver.a,gold.c}"), "d IS NOT NULL");
        assert_eq!(r("d {SINCE:silver.b}"), "d IS NULL");
        assert!(render_affects("d {OOPS:x}", &changes).is_err());
        assert!(render_affects("d {IN:x", &changes).is_err());
    }

    #[test]
    fn every_dated_model_reads_only_the_dates_it_rebuilds() {
        // A `Refresh::Dates` model that forgot `{DATES}` would still be right (the outer
        // filter) but would scan all of silver on every build.
        for m in GOLD {
            match m.refresh {
                Refresh::Dates { .. } => assert!(m.sql.contains("{DATES}"), "{}", m.name),
                Refresh::Whole(_) => assert!(!m.sql.contains("{DATES}"), "{}", m.name),
            }
        }
    }
}
