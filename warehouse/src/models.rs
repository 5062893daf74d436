//! Silver and gold, built by `shopstream warehouse build`.
//!
//! **Silver**: one table per event type (`silver.order_placed_v1`, ...), with the envelope
//! columns and the payload's fields typed by the Arrow schema the event contract derives from
//! the Rust types (`events::schema::arrow_schema_for`), partitioned by event date and
//! deduplicated by event id. A build re-derives only the dates whose bronze partitions changed
//! since the last build (late events land in their own date and make it change), and replaces
//! exactly those partitions, so it is incremental and idempotent.
//!
//! **Gold**: the curated models, SQL over silver ([`GOLD`]), rebuilt whole in dependency order
//! (each is one overwrite commit, so readers see the old or the new version, never a mix).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::prelude::{SessionContext, col, lit};
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
    /// (model, rows) for gold.
    pub gold: Vec<(String, u64)>,
}

/// Rows per date of each bronze table at the last build.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BuildState {
    bronze_rows: BTreeMap<String, BTreeMap<i32, u64>>,
}

const STATE_FILE: &str = "build-state.json";

/// The silver table of an event type: `order.placed.v1` → `order_placed_v1`.
pub fn silver_name(event_type: &str) -> String {
    event_type.replace(['.', '-'], "_")
}

/// Builds silver from bronze (changed dates only, or all with `full`) and then every gold
/// model.
pub async fn build(lake: &Lake, full: bool) -> Result<BuildReport, WarehouseError> {
    let mut report = BuildReport::default();
    let state_path = lake.root().join(STATE_FILE);
    let mut state: BuildState = match std::fs::read(&state_path) {
        Ok(bytes) if !full => serde_json::from_slice(&bytes).unwrap_or_default(),
        _ => BuildState::default(),
    };

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
        }
        report.silver_dates.push((table.clone(), changed.len()));
        state.bronze_rows.insert(table, now);
    }
    // Silver is durable: remember what it was built from (a crash before this line only
    // makes the next build redo the same dates, which replaces them with the same rows).
    let tmp = state_path.with_extension("json.tmp");
    std::fs::File::create(&tmp)?
        .write_all(&serde_json::to_vec_pretty(&state).unwrap_or_default())?;
    std::fs::rename(&tmp, &state_path)?;

    report.gold = build_gold(lake).await?;
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
    let in_list = dates
        .iter()
        .map(|d| format!("CAST({d} AS DATE)"))
        .collect::<Vec<_>>()
        .join(", ");
    let batches = ctx
        .sql(&format!(
            "SELECT event_id, event_type, source, subject, event_time, {DATE_COLUMN}, payload \
             FROM bronze.{family} WHERE {DATE_COLUMN} IN ({in_list}) \
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
    let family_types: BTreeSet<&str> = events::EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| events::Event::topic_of(t).is_some_and(|tp| bronze::table_name(tp) == family))
        .collect();
    for event_type in family_types {
        let rows = by_type.remove(event_type).unwrap_or_default();
        let batch = silver_batch(&all, event_type, &rows)?;
        written += batch.num_rows() as u64;
        let schema = batch.schema();
        let name = silver_name(event_type);
        let table = lake
            .open_or_create(Layer::Silver, &name, &schema, &[DATE_COLUMN])
            .await?;
        let predicate = col(DATE_COLUMN).in_list(
            dates
                .iter()
                .map(|d| lit(ScalarValue::Date32(Some(*d))))
                .collect(),
            false,
        );
        table
            .write(vec![batch])
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate)
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

/// A gold model: its name and the SQL that derives it from silver (and earlier models).
pub struct Model {
    pub name: &'static str,
    pub about: &'static str,
    pub sql: &'static str,
}

/// Commission the marketplace takes on vendors' confirmed sales (basis points).
pub const COMMISSION_BPS: i64 = 1_000;

/// The gold models in dependency order.
pub const GOLD: &[Model] = &[
    Model {
        name: "dim_product",
        about: "product versions (SCD2): attributes and price valid from..to; is_current",
        sql: include_str!("models/dim_product.sql"),
    },
    Model {
        name: "dim_customer",
        about: "customers with PII masked (email shown as a***@domain, name hidden)",
        sql: include_str!("models/dim_customer.sql"),
    },
    Model {
        name: "fact_orders",
        about: "one row per order: amounts, countries, status (placed/confirmed/cancelled)",
        sql: include_str!("models/fact_orders.sql"),
    },
    Model {
        name: "fact_order_items",
        about: "one row per order line, with the product's category and vendor when ordered",
        sql: include_str!("models/fact_order_items.sql"),
    },
    Model {
        name: "fact_payments",
        about: "one row per payment outcome: authorized, failed (with reason) or refunded",
        sql: include_str!("models/fact_payments.sql"),
    },
    Model {
        name: "fact_page_views",
        about: "one row per product view",
        sql: include_str!("models/fact_page_views.sql"),
    },
    Model {
        name: "daily_revenue",
        about: "confirmed orders and revenue per day and currency",
        sql: include_str!("models/daily_revenue.sql"),
    },
    Model {
        name: "funnel_daily",
        about: "sessions that viewed, sessions that added to cart, orders placed, orders paid, per day",
        sql: include_str!("models/funnel_daily.sql"),
    },
    Model {
        name: "vendor_commissions",
        about: "confirmed sales and the marketplace's commission per vendor, day and currency",
        sql: include_str!("models/vendor_commissions.sql"),
    },
    Model {
        name: "cohort_retention",
        about: "customers of each first-order month still ordering N months later",
        sql: include_str!("models/cohort_retention.sql"),
    },
    Model {
        name: "rfm_segments",
        about: "recency, frequency and monetary scores (1-5) and a segment per customer",
        sql: include_str!("models/rfm_segments.sql"),
    },
];

/// Rebuilds every gold model from silver, in order; returns rows per model.
pub async fn build_gold(lake: &Lake) -> Result<Vec<(String, u64)>, WarehouseError> {
    let ctx = SessionContext::new();
    register_layer(&ctx, lake, Layer::Silver).await?;
    ensure_silver(&ctx, lake).await?;
    let mut out = Vec::new();
    for model in GOLD {
        let sql = model
            .sql
            .replace("{COMMISSION_BPS}", &COMMISSION_BPS.to_string());
        let df = ctx.sql(&sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let table = lake
            .open_or_create(Layer::Gold, model.name, &schema, &[])
            .await?;
        let batches = if batches.is_empty() {
            vec![RecordBatch::new_empty(schema)]
        } else {
            batches
        };
        let table = table
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            .await?;
        // Later models read earlier ones.
        crate::sql::register(&ctx, "gold", model.name, &table).await?;
        out.push((model.name.to_owned(), rows));
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
