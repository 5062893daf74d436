//! `shopstream bench warehouse`: the loader's events/s, freshness event → visible in SQL, the
//! model build in full and incrementally after newer events, and an analyst query set over a gold-shaped order-lines table timed in DataFusion and in DuckDB
//! reading the same Parquet files in the same run, and on Ballista (standalone) with its answers
//! checked against DataFusion's. Private topics and a private lake under the
//! temp dir, removed afterwards. Prints a table; not a test.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use events::Envelope;
use events::domain::clickstream::ProductViewed;
use ingest::simulate::{Generator, SimConfig};
use ingest::{EventProducer, TopicAdmin};
use tokio::sync::watch;
use uuid::Uuid;
use warehouse::bronze::{LoaderOptions, run_loader};
use warehouse::datafusion::arrow::array::{
    ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray,
};
use warehouse::datafusion::arrow::datatypes::{DataType, Field, Schema};
use warehouse::datafusion::arrow::util::display::array_value_to_string;
use warehouse::distributed::{BallistaSql, Cluster};
use warehouse::sql::{Access, QueryResult, SqlEngine};
use warehouse::{Lake, Layer, WarehouseConfig};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct WarehouseArgs {
    /// Simulator events produced first, then loaded into bronze from the beginning.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Seconds of the freshness probe (one event every 100 ms while the loader runs live).
    #[arg(long, default_value_t = 20)]
    freshness_secs: u64,
    /// Simulator events (spread over several days) built into silver and gold, first in full,
    /// then incrementally after `--late-events` more arrive (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    build_events: usize,
    /// Events that arrive between the full and the incremental build.
    #[arg(long, default_value_t = 20_000)]
    late_events: usize,
    /// Order lines of the analyst query set (0 skips it).
    #[arg(long, default_value_t = 10_000_000)]
    order_lines: usize,
    /// Skip running the query set on Ballista (standalone) as well.
    #[arg(long)]
    no_ballista: bool,
    /// Python interpreter for DuckDB; if it lacks duckdb, a venv under ~/.cache gets it from PyPI.
    #[arg(long, default_value = "python3")]
    python: String,
}

pub async fn run(cfg: &Config, args: &WarehouseArgs) -> anyhow::Result<()> {
    let lake_dir = std::env::temp_dir().join(format!(
        "shopstream-bench-warehouse-{}",
        Uuid::now_v7().simple()
    ));
    let lake = Lake::new(&lake_dir);
    let result = bench(cfg, args, &lake).await;
    let _ = std::fs::remove_dir_all(&lake_dir);
    result
}

async fn bench(cfg: &Config, args: &WarehouseArgs, lake: &Lake) -> anyhow::Result<()> {
    TopicAdmin::new(&cfg.kafka)?
        .apply(&cfg.kafka.topic_names().plan())
        .await?;
    let producer = EventProducer::new(&cfg.kafka)?;
    let mut figures: Vec<(String, String, String)> = Vec::new();

    // 1. Loader throughput.
    if args.events > 0 {
        eprintln!("producing {} simulator events ...", args.events);
        let events: Vec<Envelope> = Generator::new(SimConfig::default())
            .take(args.events)
            .collect();
        for chunk in events.chunks(20_000) {
            producer.publish_all(chunk).await?;
        }
        drop(events);
        eprintln!("loading them into bronze ...");
        let (_tx, rx) = watch::channel(false);
        let opts = LoaderOptions {
            batch_rows: cfg.warehouse.batch_rows,
            max_wait: Duration::from_millis(cfg.warehouse.commit_interval_ms),
            stop_when_idle: Some(Duration::from_secs(2)),
        };
        let report = run_loader(&cfg.kafka, lake, &opts, rx).await?;
        let rate = report.rows as f64 / report.active.as_secs_f64().max(1e-9);
        figures.push((
            "loader, Kafka → bronze Delta".into(),
            format!(
                "{:.0} events/s ({} rows, {} commits, {:.1} s)",
                rate,
                report.rows,
                report.commits,
                report.active.as_secs_f64()
            ),
            ">= 200,000 events/s".into(),
        ));
    }

    // 2. Freshness: an event produced → visible in SQL.
    if args.freshness_secs > 0 {
        eprintln!("freshness probe for {} s ...", args.freshness_secs);
        let (tx, rx) = watch::channel(false);
        let opts = LoaderOptions {
            batch_rows: cfg.warehouse.batch_rows,
            max_wait: Duration::from_millis(cfg.warehouse.commit_interval_ms),
            stop_when_idle: None,
        };
        let (kafka, l) = (cfg.kafka.clone(), lake.clone());
        let loader = tokio::spawn(async move { run_loader(&kafka, &l, &opts, rx).await });
        let (hot, hot_task) =
            warehouse::hot::start(&cfg.kafka, lake, Default::default(), tx.subscribe()).await?;
        // Visible through the hot tier (what analysts query) and, separately, in warm Delta.
        let engine = SqlEngine::open_with_hot(lake.clone(), &cfg.warehouse, Some(hot)).await?;
        let warm_engine = SqlEngine::open(lake.clone(), &cfg.warehouse).await?;
        let mut sent: HashMap<String, Instant> = HashMap::new();
        let mut warm_sent: HashMap<String, Instant> = HashMap::new();
        let mut lat: Vec<Duration> = Vec::new();
        let mut warm_lat: Vec<Duration> = Vec::new();
        let end = Instant::now() + Duration::from_secs(args.freshness_secs);
        let give_up = end + Duration::from_secs(30);
        let mut next_send = Instant::now();
        while (Instant::now() < end || !sent.is_empty() || !warm_sent.is_empty())
            && Instant::now() < give_up
        {
            if Instant::now() >= next_send && Instant::now() < end {
                let env = Envelope::new(
                    "/bench/warehouse",
                    ProductViewed {
                        session_id: Uuid::now_v7(),
                        user_id: None,
                        product_id: Uuid::now_v7(),
                        device_id: "bench".into(),
                        referrer: None,
                    },
                );
                let at = Instant::now();
                producer.publish(&env).await?;
                sent.insert(env.id.to_string(), at);
                warm_sent.insert(env.id.to_string(), at);
                next_send += Duration::from_millis(100);
            }
            for (engine, sent, lat) in [
                (&engine, &mut sent, &mut lat),
                (&warm_engine, &mut warm_sent, &mut warm_lat),
            ] {
                if sent.is_empty() {
                    continue;
                }
                let ids: Vec<String> = sent.keys().map(|k| format!("'{k}'")).collect();
                let sql = format!(
                    "SELECT event_id FROM bronze.clickstream WHERE event_id IN ({})",
                    ids.join(",")
                );
                let r = engine.query(&sql, "bench", Access::Admin).await?;
                let now = Instant::now();
                for b in &r.batches {
                    let col =
                        warehouse::datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
                    let col = col.as_any().downcast_ref::<StringArray>().context("ids")?;
                    for id in col.iter().flatten() {
                        if let Some(t) = sent.remove(id) {
                            lat.push(now - t);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tx.send(true);
        loader.await??;
        hot_task.await??;
        for (what, mut lat, lost) in [
            ("hot tier", lat, sent.len()),
            ("warm Delta only", warm_lat, warm_sent.len()),
        ] {
            lat.sort();
            let q = |p: f64| {
                lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or_default()
            };
            figures.push((
                format!("freshness, produce → SQL ({what})"),
                format!(
                    "p50 {:.0} ms, p99 {:.0} ms ({} events, {lost} never seen; commit every {} ms)",
                    q(0.5).as_secs_f64() * 1e3,
                    q(0.99).as_secs_f64() * 1e3,
                    lat.len(),
                    cfg.warehouse.commit_interval_ms
                ),
                "p99 < 5 s".into(),
            ));
        }
    }

    // 3. Model builds: full, then incremental after a trickle of newer events.
    if args.build_events > 0 {
        figures.extend(bench_build(lake, args).await?);
    }

    // 4. The analyst query set, DataFusion vs DuckDB on the same files.
    if args.order_lines > 0 {
        eprintln!("writing {} order lines ...", args.order_lines);
        let table = write_order_lines(lake, args.order_lines).await?;
        let engine = SqlEngine::open(
            lake.clone(),
            &WarehouseConfig {
                query_timeout_secs: 600,
                ..cfg.warehouse.clone()
            },
        )
        .await?;
        let python = duckdb_python(&args.python)?;
        let ballista = if args.no_ballista {
            None
        } else {
            Some(BallistaSql::connect(lake.clone(), Cluster::Standalone, &cfg.warehouse).await?)
        };
        let mut total_df = 0.0;
        let mut total_duck = 0.0;
        let mut total_ballista = 0.0;
        for (name, sql) in QUERIES {
            let sql_df = sql.replace("{t}", "gold.bench_order_lines");
            let mut best = f64::MAX;
            let mut answer = None;
            for _ in 0..3 {
                let t = Instant::now();
                let r = engine.query(&sql_df, "bench", Access::Admin).await?;
                best = best.min(t.elapsed().as_secs_f64());
                answer = Some(r);
            }
            let answer = answer.expect("three runs");
            let rows = answer.rows();
            let duck = duckdb_time(&python, &table, sql)?;
            total_df += best;
            total_duck += duck;
            let on_ballista = match &ballista {
                Some(b) => {
                    let mut best_b = f64::MAX;
                    for _ in 0..3 {
                        let t = Instant::now();
                        let r = b.query(&sql_df, "bench").await?;
                        best_b = best_b.min(t.elapsed().as_secs_f64());
                        anyhow::ensure!(
                            same_rows(&r, &answer)?,
                            "{name}: Ballista's answer differs from DataFusion's"
                        );
                    }
                    total_ballista += best_b;
                    format!(", Ballista {:.0} ms (same rows)", best_b * 1e3)
                }
                None => String::new(),
            };
            figures.push((
                format!("query {name}"),
                format!(
                    "DataFusion {:.0} ms, DuckDB {:.0} ms, ratio {:.2} ({rows} rows){on_ballista}",
                    best * 1e3,
                    duck * 1e3,
                    best / duck
                ),
                "ratio <= 1.0".into(),
            ));
        }
        if ballista.is_some() {
            figures.push((
                "query set on Ballista (standalone)".into(),
                format!(
                    "{:.0} ms, {:.2}x DataFusion in-process",
                    total_ballista * 1e3,
                    total_ballista / total_df
                ),
                "(no target: same SQL, same tables)".into(),
            ));
        }
        figures.push((
            format!("query set over {} order lines", args.order_lines),
            format!(
                "DataFusion {:.0} ms, DuckDB {:.0} ms, ratio {:.2}",
                total_df * 1e3,
                total_duck * 1e3,
                total_df / total_duck
            ),
            "ratio <= 1.0".into(),
        ));
    }

    println!("\n{:<42} {:<70} target", "measure", "figure");
    for (m, f, t) in figures {
        println!("{m:<42} {f:<70} {t}");
    }
    Ok(())
}

/// `warehouse build` on a private lake: simulator traffic over several days landed in bronze
/// directly (the loader is measured above), built in full, then `late_events` newer events
/// and an incremental build, which should redo only the last days.
async fn bench_build(
    lake: &Lake,
    args: &WarehouseArgs,
) -> anyhow::Result<Vec<(String, String, String)>> {
    use warehouse::models::{self, Scope};
    let lake = Lake::new(lake.root().join("build"));
    // 0.2 sessions a (simulated) second spreads a million events over about twelve days.
    let mut generator = Generator::new(SimConfig {
        sessions_per_sec: 0.2,
        ..SimConfig::default()
    });
    eprintln!(
        "model builds: landing {} simulator events in bronze ...",
        args.build_events
    );
    let mut left = args.build_events;
    while left > 0 {
        let chunk: Vec<Envelope> = generator.by_ref().take(left.min(100_000)).collect();
        left -= chunk.len();
        warehouse::bronze::append(&lake, &chunk).await?;
    }
    eprintln!("full build ...");
    let t = Instant::now();
    let full = models::build(&lake, true).await?;
    let full_secs = t.elapsed().as_secs_f64();
    let dates = full.silver_dates.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let late: Vec<Envelope> = generator.by_ref().take(args.late_events).collect();
    warehouse::bronze::append(&lake, &late).await?;
    eprintln!("incremental build after {} more events ...", late.len());
    let t = Instant::now();
    let inc = models::build(&lake, false).await?;
    let inc_secs = t.elapsed().as_secs_f64();
    let redone = inc.silver_dates.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let facts = inc
        .gold
        .iter()
        .find(|g| g.model == "fact_order_items")
        .map(|g| match &g.scope {
            Scope::Dates(d) => format!("{} of its dates", d.len()),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let lines: u64 = full
        .gold
        .iter()
        .find(|g| g.model == "fact_order_items")
        .map_or(0, |g| g.rows);
    Ok(vec![
        (
            "warehouse build --full".into(),
            format!(
                "{full_secs:.1} s ({} events over {dates} days, {lines} order lines)",
                args.build_events
            ),
            "(no target)".into(),
        ),
        (
            "warehouse build, incremental".into(),
            format!(
                "{inc_secs:.1} s after {} newer events ({redone} silver days redone, \
                 fact_order_items {facts}), {:.0} % of the full build",
                late.len(),
                100.0 * inc_secs / full_secs.max(1e-9)
            ),
            "(no target: less than full)".into(),
        ),
    ])
}

/// Whether two answers hold the same rows, in any order (values as text; fractions to 9
/// significant digits, as partial aggregates may be summed in another order).
fn same_rows(a: &QueryResult, b: &QueryResult) -> anyhow::Result<bool> {
    let rows = |r: &QueryResult| -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for batch in &r.batches {
            for i in 0..batch.num_rows() {
                let mut row = Vec::new();
                for c in batch.columns() {
                    let v = array_value_to_string(c, i)?;
                    row.push(match v.parse::<f64>() {
                        Ok(x) if v.contains('.') => format!("{x:.8e}"),
                        _ => v,
                    });
                }
                out.push(row.join("|"));
            }
        }
        out.sort();
        Ok(out)
    };
    Ok(rows(a)? == rows(b)?)
}

/// The analyst query set (`{t}` is the order-lines table).
const QUERIES: &[(&str, &str)] = &[
    (
        "revenue per day",
        "SELECT order_date, sum(line_total_minor) AS revenue, count(DISTINCT order_id) AS orders FROM {t} WHERE status = 'confirmed' GROUP BY order_date ORDER BY order_date",
    ),
    (
        "top 10 products",
        "SELECT product_id, sum(line_total_minor) AS revenue FROM {t} WHERE status = 'confirmed' GROUP BY product_id ORDER BY revenue DESC LIMIT 10",
    ),
    (
        "category × month",
        "SELECT category, date_trunc('month', order_date) AS month, sum(quantity) AS units, sum(line_total_minor) AS revenue FROM {t} GROUP BY category, month ORDER BY category, month",
    ),
    (
        "customers per vendor",
        "SELECT vendor_id, count(DISTINCT customer_id) AS customers FROM {t} GROUP BY vendor_id ORDER BY customers DESC",
    ),
    (
        "basket size",
        "SELECT avg(n) AS avg_lines, avg(total) AS avg_total FROM (SELECT order_id, count(*) AS n, sum(line_total_minor) AS total FROM {t} GROUP BY order_id)",
    ),
];

/// A gold-shaped order-lines table with `n` rows (deterministic), as a Delta table.
async fn write_order_lines(lake: &Lake, n: usize) -> anyhow::Result<std::path::PathBuf> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("product_id", DataType::Utf8, false),
        Field::new("vendor_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("order_date", DataType::Date32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new("line_total_minor", DataType::Int64, false),
    ]));
    let table = lake
        .open_or_create(Layer::Gold, "bench_order_lines", &schema, &[])
        .await?;
    let mut rng: u64 = 0x9E3779B97F4A7C15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let categories = [
        "books", "garden", "toys", "kitchen", "audio", "sports", "beauty", "office",
    ];
    let mut table = table;
    let chunk = 1_000_000;
    let mut done = 0;
    while done < n {
        let m = chunk.min(n - done);
        let (mut o, mut c, mut p, mut v, mut cat, mut d, mut s, mut q, mut t) = (
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
        );
        for i in done..done + m {
            let order = i / 3; // about three lines an order
            let r = next();
            let product = (r % 20_000) as usize;
            o.push(format!("o{order:010}"));
            c.push(format!("c{:07}", (order * 7919) % 400_000));
            p.push(format!("p{product:06}"));
            v.push(format!("v{:03}", product % 300));
            cat.push(categories[product % categories.len()]);
            d.push(20_000 + (order % 365) as i32);
            s.push(if r % 10 == 0 {
                "cancelled"
            } else {
                "confirmed"
            });
            q.push(1 + (r >> 20) as i64 % 4);
            t.push((100 + (r >> 30) % 20_000) as i64);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(o)),
            Arc::new(StringArray::from(c)),
            Arc::new(StringArray::from(p)),
            Arc::new(StringArray::from(v)),
            Arc::new(StringArray::from(cat)),
            Arc::new(Date32Array::from(d)),
            Arc::new(StringArray::from(s)),
            Arc::new(Int64Array::from(q)),
            Arc::new(Int64Array::from(t)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols)?;
        table = table.write(vec![batch]).await?;
        done += m;
    }
    Ok(lake.path(Layer::Gold, "bench_order_lines"))
}

/// A Python that can `import duckdb`: the given one, or a venv under ~/.cache made with it.
fn duckdb_python(python: &str) -> anyhow::Result<String> {
    let ok = |py: &str| {
        std::process::Command::new(py)
            .args(["-c", "import duckdb"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok(python) {
        return Ok(python.to_owned());
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    let venv = Path::new(&home).join(".cache/shopstream-duckdb");
    let py = venv.join("bin/python").to_string_lossy().into_owned();
    if !ok(&py) {
        eprintln!("installing duckdb from PyPI into {} ...", venv.display());
        let status = std::process::Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?;
        anyhow::ensure!(status.success(), "python -m venv failed");
        let status = std::process::Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "duckdb==2.0.0"])
            .status()?;
        anyhow::ensure!(status.success(), "pip install duckdb failed");
    }
    Ok(py)
}

/// DuckDB's best of three on the table's Parquet files (written once: every file is live).
fn duckdb_time(python: &str, table: &Path, sql: &str) -> anyhow::Result<f64> {
    let files = format!("read_parquet('{}/*.parquet')", table.display());
    let sql = sql.replace("{t}", &files);
    let script = r#"
import sys, time, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
sql = sys.argv[1]
best = 1e9
for _ in range(3):
    t = time.perf_counter()
    con.execute(sql).fetchall()
    best = min(best, time.perf_counter() - t)
print(best)
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, &sql])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().trim();
    last.parse()
        .with_context(|| format!("duckdb printed {stdout:?}, not a time"))
}
