//! The gold models derived by Polars batch jobs (`cohort_retention`, `rfm_segments`):
//! DataFusion reads each job's input from gold with the model's SQL, Polars derives the model
//! from it in memory, and the build writes the result like any other model's.
//!
//! Both are whole-history scores per customer, recomputed when `fact_orders` changes. The
//! frames cross between the two engines column by column: strings, integers and microsecond
//! timestamps (naive UTC in Polars) in, the same and floats out, which is all these models
//! read and write.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use polars::prelude as pl;
use polars::prelude::{IntoLazy as _, col, len, lit, when};

use crate::WarehouseError;

/// A gold model's Polars job: `run` turns the rows the model's SQL selected into the model.
/// `id` changes whenever the job's logic does, so lakes built by an older job rebuild.
pub struct PolarsJob {
    pub id: &'static str,
    pub run: fn(SchemaRef, Vec<RecordBatch>) -> Result<RecordBatch, WarehouseError>,
}

/// Customers grouped by the month of their first confirmed order; for each later month, how
/// many of them ordered again and what share of the cohort that is. Input: `customer_id`,
/// `placed_at` of the confirmed orders.
pub const COHORT_RETENTION: PolarsJob = PolarsJob {
    id: "polars cohort_retention v1",
    run: cohort_retention,
};

/// Recency (days since the last confirmed order, counted from the latest order in the data),
/// frequency and monetary value per customer, each scored 1-5 by quintile (ties broken by
/// customer id, so a rebuild gives the same scores), and a segment. Input: `customer_id`,
/// `placed_at`, `status`, `total_minor` of every order.
pub const RFM_SEGMENTS: PolarsJob = PolarsJob {
    id: "polars rfm_segments v1",
    run: rfm_segments,
};

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn cohort_retention(
    schema: SchemaRef,
    input: Vec<RecordBatch>,
) -> Result<RecordBatch, WarehouseError> {
    let timestamp = timestamp_type(&schema, "placed_at")?;
    let orders = to_frame(&schema, &input)?.lazy().select([
        col("customer_id"),
        col("placed_at").dt().truncate(lit("1mo")).alias("month"),
    ]);
    let firsts = orders
        .clone()
        .group_by([col("customer_id")])
        .agg([col("month").min().alias("cohort_month")]);
    let sizes = firsts
        .clone()
        .group_by([col("cohort_month")])
        .agg([len().cast(pl::DataType::Int64).alias("cohort_size")]);
    let months = |c: &str| {
        col(c).dt().year().cast(pl::DataType::Int64) * lit(12)
            + col(c).dt().month().cast(pl::DataType::Int64)
    };
    let out = orders
        .inner_join(firsts, col("customer_id"), col("customer_id"))
        .group_by([col("cohort_month"), col("month")])
        .agg([col("customer_id")
            .n_unique()
            .cast(pl::DataType::Int64)
            .alias("customers")])
        .inner_join(sizes, col("cohort_month"), col("cohort_month"))
        .select([
            col("cohort_month"),
            (months("month") - months("cohort_month")).alias("months_since"),
            col("cohort_size"),
            col("customers"),
            (col("customers").cast(pl::DataType::Float64)
                / col("cohort_size").cast(pl::DataType::Float64))
            .alias("retention"),
        ])
        .sort(["cohort_month", "months_since"], Default::default())
        .collect()?;
    to_batch(
        &out,
        Arc::new(Schema::new(vec![
            Field::new("cohort_month", timestamp, true),
            Field::new("months_since", DataType::Int64, true),
            Field::new("cohort_size", DataType::Int64, true),
            Field::new("customers", DataType::Int64, true),
            Field::new("retention", DataType::Float64, true),
        ])),
    )
}

fn rfm_segments(schema: SchemaRef, input: Vec<RecordBatch>) -> Result<RecordBatch, WarehouseError> {
    let timestamp = timestamp_type(&schema, "placed_at")?;
    let orders = to_frame(&schema, &input)?;
    // Recency counts from the latest order of any status.
    let latest = orders
        .column("placed_at")?
        .as_materialized_series()
        .cast(&pl::DataType::Int64)?
        .i64()?
        .iter()
        .flatten()
        .max()
        .unwrap_or(0);
    let per_customer = orders
        .lazy()
        .filter(col("status").eq(lit("confirmed")))
        .group_by([col("customer_id")])
        .agg([
            col("placed_at").max().alias("last_order_at"),
            len().cast(pl::DataType::Int64).alias("frequency"),
            col("total_minor").sum().alias("monetary_minor"),
        ])
        .with_column(
            (lit(latest) - col("last_order_at").cast(pl::DataType::Int64))
                .floor_div(lit(MICROS_PER_DAY))
                .alias("recency_days"),
        );
    let scored = ntile5(per_customer, "last_order_at", "recency_score");
    let scored = ntile5(scored, "frequency", "frequency_score");
    let scored = ntile5(scored, "monetary_minor", "monetary_score");
    let (r, f) = (col("recency_score"), col("frequency_score"));
    let segment = when(r.clone().gt_eq(lit(4)).and(f.clone().gt_eq(lit(4))))
        .then(lit("champions"))
        .when(f.clone().gt_eq(lit(4)))
        .then(lit("loyal"))
        .when(r.clone().gt_eq(lit(4)).and(f.clone().lt_eq(lit(2))))
        .then(lit("new_or_promising"))
        .when(r.clone().lt_eq(lit(2)).and(f.gt_eq(lit(3))))
        .then(lit("at_risk"))
        .when(r.lt_eq(lit(2)))
        .then(lit("hibernating"))
        .otherwise(lit("needs_attention"))
        .alias("segment");
    let out = scored
        .with_column(segment)
        .sort(["customer_id"], Default::default())
        .collect()?;
    to_batch(
        &out,
        Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, true),
            Field::new("last_order_at", timestamp, true),
            Field::new("recency_days", DataType::Int64, true),
            Field::new("frequency", DataType::Int64, true),
            Field::new("monetary_minor", DataType::Int64, true),
            Field::new("recency_score", DataType::Int64, true),
            Field::new("frequency_score", DataType::Int64, true),
            Field::new("monetary_score", DataType::Int64, true),
            Field::new("segment", DataType::Utf8, true),
        ])),
    )
}

/// SQL's `ntile(5) OVER (ORDER BY by)` as the column `out`, ties broken by customer id: with
/// `base = n / 5` and `rest = n % 5`, the first `rest` buckets hold `base + 1` rows and the
/// others `base` (DataFusion's and PostgreSQL's split).
fn ntile5(frame: pl::LazyFrame, by: &str, out: &str) -> pl::LazyFrame {
    let n = || len().cast(pl::DataType::Int64);
    let base = || n().floor_div(lit(5i64));
    let rest = || n() % lit(5i64);
    let large = || rest() * (base() + lit(1i64));
    let i = || col("row").cast(pl::DataType::Int64);
    // `base` is 0 only when every row is in a large bucket; the guard keeps the unused branch
    // from dividing by zero.
    let divisor = when(base().gt(lit(0i64))).then(base()).otherwise(lit(1i64));
    let bucket = when(i().lt(large()))
        .then(i().floor_div(base() + lit(1i64)) + lit(1i64))
        .otherwise(rest() + (i() - large()).floor_div(divisor) + lit(1i64))
        .alias(out);
    frame
        .sort([by, "customer_id"], Default::default())
        .with_row_index("row", None)
        .with_column(bucket)
        .drop(pl::cols(["row"]))
}

fn timestamp_type(schema: &Schema, name: &str) -> Result<DataType, WarehouseError> {
    match schema.field_with_name(name)?.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            Ok(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))
        }
        other => Err(WarehouseError::Busy(format!(
            "{name} is {other}, the Polars jobs read microsecond timestamps"
        ))),
    }
}

/// DataFusion's rows as a Polars frame.
fn to_frame(schema: &Schema, batches: &[RecordBatch]) -> Result<pl::DataFrame, WarehouseError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let name = pl::PlSmallStr::from_str(field.name());
        let parts = |to: &DataType| -> Result<Vec<ArrayRef>, WarehouseError> {
            Ok(batches
                .iter()
                .map(|b| cast(b.column(i), to))
                .collect::<Result<_, _>>()?)
        };
        let column = match field.data_type() {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                let parts = parts(&DataType::Utf8)?;
                let values: Vec<Option<&str>> = parts
                    .iter()
                    .flat_map(|a| a.as_string::<i32>().iter())
                    .collect();
                pl::Column::new(name, values)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let values = int64_values(&parts(&DataType::Int64)?);
                pl::Column::new(name, values)
                    .cast(&pl::DataType::Datetime(pl::TimeUnit::Microseconds, None))?
            }
            t if t.is_integer() => pl::Column::new(name, int64_values(&parts(&DataType::Int64)?)),
            other => {
                return Err(WarehouseError::Busy(format!(
                    "column {} is {other}, which the Polars jobs do not read",
                    field.name()
                )));
            }
        };
        columns.push(column);
    }
    Ok(pl::DataFrame::new(rows, columns)?)
}

fn int64_values(parts: &[ArrayRef]) -> Vec<Option<i64>> {
    parts
        .iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().iter())
        .collect()
}

/// A Polars frame as one record batch of `schema` (columns by name).
fn to_batch(frame: &pl::DataFrame, schema: SchemaRef) -> Result<RecordBatch, WarehouseError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let series = frame.column(field.name())?.as_materialized_series();
        let column: ArrayRef = match field.data_type() {
            DataType::Utf8 => Arc::new(series.str()?.iter().collect::<StringArray>()),
            DataType::Int64 => {
                let s = series.cast(&pl::DataType::Int64)?;
                Arc::new(s.i64()?.iter().collect::<Int64Array>())
            }
            DataType::Float64 => {
                let s = series.cast(&pl::DataType::Float64)?;
                Arc::new(s.f64()?.iter().collect::<Float64Array>())
            }
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                let s = series.cast(&pl::DataType::Int64)?;
                Arc::new(
                    s.i64()?
                        .iter()
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone_opt(tz.clone()),
                )
            }
            other => {
                return Err(WarehouseError::Busy(format!(
                    "the Polars jobs do not write {other} ({})",
                    field.name()
                )));
            }
        };
        debug_assert_eq!(column.len(), frame.height());
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(rows: &[(&str, i64, &str, i64)]) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8View, false),
            Field::new(
                "placed_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("status", DataType::Utf8, false),
            Field::new("total_minor", DataType::Int64, false),
        ]));
        let customers: ArrayRef = Arc::new(datafusion::arrow::array::StringViewArray::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ));
        let placed: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())
                .with_timezone("UTC"),
        );
        let status: ArrayRef = Arc::new(StringArray::from(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ));
        let totals: ArrayRef = Arc::new(Int64Array::from(
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![customers, placed, status, totals]).unwrap();
        (schema, vec![batch])
    }

    fn column<'a>(b: &'a RecordBatch, name: &str) -> &'a Int64Array {
        b.column_by_name(name).unwrap().as_primitive::<Int64Type>()
    }

    #[test]
    fn ntile_splits_like_sql_and_breaks_ties_by_customer() {
        // Seven customers, one confirmed order each, the same amount: every monetary value
        // ties, so the scores follow the customer ids; 7 rows in 5 buckets are 2,2,1,1,1.
        let day = MICROS_PER_DAY;
        let rows: Vec<(String, i64)> = (0..7).map(|i| (format!("c{i}"), i * day)).collect();
        let rows: Vec<(&str, i64, &str, i64)> = rows
            .iter()
            .rev()
            .map(|(c, t)| (c.as_str(), *t, "confirmed", 500))
            .collect();
        let (schema, batches) = input(&rows);
        let out = (RFM_SEGMENTS.run)(schema, batches).unwrap();
        let m: Vec<i64> = column(&out, "monetary_score").iter().flatten().collect();
        assert_eq!(m, vec![1, 1, 2, 2, 3, 4, 5]);
        // Recency: c0 ordered first (6 days before the latest order), c6 last.
        let r: Vec<i64> = column(&out, "recency_score").iter().flatten().collect();
        assert_eq!(r, vec![1, 1, 2, 2, 3, 4, 5]);
        let days: Vec<i64> = column(&out, "recency_days").iter().flatten().collect();
        assert_eq!(days, vec![6, 5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn recency_counts_from_the_latest_order_of_any_status() {
        let day = MICROS_PER_DAY;
        let (schema, batches) = input(&[
            ("a", 0, "confirmed", 100),
            ("a", day / 2, "confirmed", 50),
            ("b", 3 * day, "cancelled", 999),
        ]);
        let out = (RFM_SEGMENTS.run)(schema, batches).unwrap();
        assert_eq!(out.num_rows(), 1, "b has no confirmed order");
        assert_eq!(
            column(&out, "recency_days").value(0),
            2,
            "2.5 days, floored"
        );
        assert_eq!(column(&out, "frequency").value(0), 2);
        assert_eq!(column(&out, "monetary_minor").value(0), 150);
    }

    #[test]
    fn cohorts_by_first_month() {
        // 2026-01-31 and 2026-02-01 are different months; c2 first ordered in February.
        let jan31 = 1_769_817_600_000_000; // 2026-01-31T00:00:00Z
        let feb1 = jan31 + MICROS_PER_DAY;
        let mar1 = feb1 + 28 * MICROS_PER_DAY;
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new(
                "placed_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["c1", "c1", "c2", "c1", "c2"])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![jan31, feb1, feb1, mar1, mar1])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let out = (COHORT_RETENTION.run)(schema, vec![batch]).unwrap();
        let cohort = out
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        let jan1 = jan31 - 30 * MICROS_PER_DAY;
        let rows: Vec<(i64, i64, i64, i64)> = (0..out.num_rows())
            .map(|i| {
                (
                    cohort.value(i),
                    column(&out, "months_since").value(i),
                    column(&out, "cohort_size").value(i),
                    column(&out, "customers").value(i),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (jan1, 0, 1, 1),
                (jan1, 1, 1, 1),
                (jan1, 2, 1, 1),
                (feb1, 0, 1, 1),
                (feb1, 1, 1, 1),
            ]
        );
    }
}
