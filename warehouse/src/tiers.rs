//! The cold tier: bronze partitions older than a cutoff move to `<dir>/cold/<table>`, written
//! once more as large zstd Parquet files sorted by subject (the customer, product or order the
//! event is about), then deleted from the warm table; cold partitions past the retention are
//! dropped, and files no longer referenced are vacuumed.
//!
//! No double counting at the boundary: the cold table's commit records, in the same Delta
//! transaction as its rows, the cutoff (`tier/cutoff`, days since 1970) and the highest Kafka
//! offset it holds per partition (`tier/<partition>`). A row is in cold exactly when its date
//! is before the cutoff and its offset at or below that partition's mark (the loader commits in
//! offset order, so every such row was in warm when it moved). Readers take the warm rows that
//! are not in cold plus the cold rows, so a crash between the copy and the delete, or a late
//! event for an old date arriving after the move, is counted once.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::ops::Not as _;

use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;

use crate::WarehouseError;
use crate::bronze::{self, DATE_COLUMN};
use crate::lake::{Lake, Layer};

/// App id of the cutoff in the cold table's log.
pub const CUTOFF_APP: &str = "tier/cutoff";
/// App id of one past the highest partition with a mark (so readers know which to read).
pub const PARTITIONS_APP: &str = "tier/partitions";

pub fn partition_app(partition: i32) -> String {
    format!("tier/{partition}")
}

/// Where a table's cold rows end: the cutoff date and the highest offset per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boundary {
    pub cutoff: Option<i32>,
    pub moved: BTreeMap<i32, i64>,
}

impl Boundary {
    /// Reads the boundary recorded in a cold table.
    pub async fn of(cold: &DeltaTable) -> Result<Boundary, WarehouseError> {
        let snapshot = cold.snapshot()?;
        let store = cold.log_store();
        let cutoff = snapshot
            .transaction_version(store.as_ref(), CUTOFF_APP)
            .await?
            .map(|v| v as i32);
        let span = snapshot
            .transaction_version(store.as_ref(), PARTITIONS_APP)
            .await?
            .unwrap_or(0) as i32;
        let mut moved = BTreeMap::new();
        // -1 is rows appended without Kafka.
        for p in -1..span {
            if let Some(v) = snapshot
                .transaction_version(store.as_ref(), partition_app(p))
                .await?
            {
                moved.insert(p, v);
            }
        }
        Ok(Boundary { cutoff, moved })
    }

    /// True for the rows the cold table holds (evaluated on warm rows).
    pub fn in_cold(&self) -> Expr {
        let Some(cutoff) = self.cutoff else {
            return lit(false);
        };
        let covered = self
            .moved
            .iter()
            .map(|(p, o)| {
                col("kafka_partition")
                    .eq(lit(*p))
                    .and(col("kafka_offset").lt_eq(lit(*o)))
            })
            .reduce(Expr::or)
            .unwrap_or(lit(false));
        col(DATE_COLUMN)
            .lt(lit(ScalarValue::Date32(Some(cutoff))))
            .and(covered)
    }
}

/// What a tiering run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierReport {
    /// (table, rows moved to cold).
    pub moved: Vec<(String, u64)>,
    /// Cold rows dropped by the retention.
    pub expired: u64,
    /// Files vacuumed from warm and cold.
    pub vacuumed: usize,
}

/// How to tier.
#[derive(Debug, Clone)]
pub struct TierOptions {
    /// Move partitions whose date is older than this many days (from `today`).
    pub cold_after_days: u32,
    /// Drop cold partitions older than this many days (none: keep forever).
    pub retention_days: Option<u32>,
    /// Vacuum files unreferenced for at least this many hours (Delta's default is 168).
    pub vacuum_hours: i64,
    /// "Today", in days since 1970 (the current date unless a test says otherwise).
    pub today: i32,
}

impl Default for TierOptions {
    fn default() -> Self {
        TierOptions {
            cold_after_days: 7,
            retention_days: None,
            vacuum_hours: 168,
            today: bronze::date32(chrono::Utc::now()),
        }
    }
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(6).unwrap_or_default()))
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

/// Moves old bronze partitions to cold, applies the retention and vacuums.
pub async fn tier(lake: &Lake, opts: &TierOptions) -> Result<TierReport, WarehouseError> {
    let mut report = TierReport::default();
    let cutoff = opts.today - opts.cold_after_days as i32;
    for name in lake.tables(Layer::Bronze) {
        let warm = lake.open(Layer::Bronze, &name).await?;
        let cold = lake
            .open_or_create(Layer::Cold, &name, &bronze::schema(), &[DATE_COLUMN])
            .await?;
        let before = Boundary::of(&cold).await?;

        // 1. Copy the rows to move (old, and not in cold yet) into cold, with the new boundary.
        let ctx = SessionContext::new();
        warm.update_datafusion_session(&ctx.state())?;
        let df = ctx
            .read_table(warm.table_provider().await?)?
            .filter(
                col(DATE_COLUMN)
                    .lt(lit(ScalarValue::Date32(Some(cutoff))))
                    .and(before.in_cold().not()),
            )?
            .sort(vec![
                col("subject").sort(true, true),
                col("event_time").sort(true, true),
            ])?;
        let batches = df.collect().await?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut after = before.clone();
        after.cutoff = Some(before.cutoff.unwrap_or(i32::MIN).max(cutoff));
        for b in &batches {
            let parts = b.column_by_name("kafka_partition").and_then(|c| {
                c.as_any()
                    .downcast_ref::<deltalake::arrow::array::Int32Array>()
                    .cloned()
            });
            let offs = b.column_by_name("kafka_offset").and_then(|c| {
                c.as_any()
                    .downcast_ref::<deltalake::arrow::array::Int64Array>()
                    .cloned()
            });
            if let (Some(parts), Some(offs)) = (parts, offs) {
                for i in 0..b.num_rows() {
                    let e = after.moved.entry(parts.value(i)).or_insert(i64::MIN);
                    *e = (*e).max(offs.value(i));
                }
            }
        }
        let cold = if rows > 0 || after.cutoff != before.cutoff {
            let mut txns = vec![Transaction::new(
                CUTOFF_APP,
                after.cutoff.unwrap_or(cutoff) as i64,
            )];
            txns.extend(
                after
                    .moved
                    .iter()
                    .map(|(p, o)| Transaction::new(partition_app(*p), *o)),
            );
            let span = after.moved.keys().next_back().map_or(0, |p| p + 1).max(0);
            txns.push(Transaction::new(PARTITIONS_APP, span as i64));
            cold.write(batches)
                .with_partition_columns([DATE_COLUMN])
                .with_writer_properties(writer_properties())
                .with_commit_properties(
                    CommitProperties::default().with_application_transactions(txns),
                )
                .await?
        } else {
            cold
        };

        // 2. Delete them from warm (readers already skip them by the boundary).
        let warm = if !after.moved.is_empty() && after.cutoff.is_some() {
            let (warm, _) = warm.delete().with_predicate(after.in_cold()).await?;
            warm
        } else {
            warm
        };

        // 3. Retention: drop cold partitions past it.
        let cold = match opts.retention_days {
            Some(days) => {
                let oldest = opts.today - days as i32;
                let (cold, metrics) = cold
                    .delete()
                    .with_predicate(col(DATE_COLUMN).lt(lit(ScalarValue::Date32(Some(oldest)))))
                    .await?;
                report.expired += metrics.num_deleted_rows.unwrap_or(0) as u64;
                cold
            }
            None => cold,
        };

        // 4. Compact cold into large files, and vacuum both.
        let (cold, _) = cold
            .optimize()
            .with_target_size(NonZeroU64::new(256 << 20).expect("non-zero"))
            .with_writer_properties(writer_properties())
            .await?;
        for table in [warm, cold] {
            let (_, m) = table
                .vacuum()
                .with_retention_period(chrono::Duration::hours(opts.vacuum_hours))
                .with_enforce_retention_duration(false)
                .await?;
            report.vacuumed += m.files_deleted.len();
        }
        report.moved.push((name, rows));
    }
    Ok(report)
}
