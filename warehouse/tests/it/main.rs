//! The gold models on a fixed fixture, checked by `.slt` (sqllogictest) files under
//! `tests/slt/`: a handful of customers, products, orders (one delivered twice, one cancelled,
//! one arriving late for an earlier day) and clickstream, landed in bronze without Kafka,
//! built into silver and gold, queried through the analysts' SQL engine.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use datafusion::arrow::util::display::array_value_to_string;
use events::{Envelope, Event};
use serde_json::{Value, json};
use uuid::Uuid;
use warehouse::distributed::{BallistaSql, Cluster};
use warehouse::sql::{Access, QueryError, QueryResult, SqlEngine};
use warehouse::{Lake, Layer, WarehouseConfig, bronze, models};

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
        .single()
        .unwrap()
}

fn eur(minor: i64) -> Value {
    json!({"amount_minor": minor, "currency": "EUR"})
}

/// One envelope; `n` makes the event id (the same `n` is the same event, delivered again).
fn ev(n: u128, time: DateTime<Utc>, event_type: &str, payload: Value) -> Envelope {
    let event = Event::from_json(event_type, payload.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{event_type}: {e}"));
    Envelope {
        id: Uuid::from_u128(0x0199_0000_0000_7000_8000_0000_0000_0000 | n),
        source: "/test/fixture".into(),
        time,
        subject: Some(event.key()),
        traceparent: None,
        event,
    }
}

fn order(
    n: u128,
    order: u128,
    customer: u128,
    time: DateTime<Utc>,
    lines: &[(u128, u32, i64)],
    shipping: i64,
) -> Envelope {
    let subtotal: i64 = lines.iter().map(|l| l.1 as i64 * l.2).sum();
    ev(
        n,
        time,
        "order.placed.v1",
        json!({
            "order_id": id(order), "customer_id": id(customer),
            "lines": lines.iter().map(|(p, q, price)| json!({
                "product_id": id(*p), "sku": format!("SKU-{p:03}"), "quantity": q, "unit_price": eur(*price)
            })).collect::<Vec<_>>(),
            "subtotal": eur(subtotal), "discount": eur(0), "shipping": eur(shipping), "tax": eur(0),
            "total": eur(subtotal + shipping), "coupon": null,
            "card": {"fingerprint": "fp_1", "bin": "424242", "last4": "4242", "country": "DE"},
            "billing_country": "DE", "shipping_country": "DE", "ip": "203.0.113.7", "device_id": "dev-1"
        }),
    )
}

fn confirmed(n: u128, order: u128, customer: u128, time: DateTime<Utc>, total: i64) -> Envelope {
    ev(
        n,
        time,
        "order.confirmed.v1",
        json!({
            "order_id": id(order), "customer_id": id(customer), "payment_id": id(900 + order),
            "shipment_id": id(950 + order), "total": eur(total)
        }),
    )
}

/// The fixture: customers 1 (alice) and 2 (bob); products 101 (books, vendor 201, 10.00 then
/// 12.00 from day 2) and 102 (toys, vendor 202, 25.00); orders 301 (alice, day 1, 2 × 101 +
/// 5.00 shipping, confirmed, its placed event delivered twice), 302 (bob, day 1, 102, cancelled),
/// 303 (alice, day 2, 101 at the new price, confirmed), 304 (bob, day 3, 101 + 102, confirmed;
/// loaded in a second batch: a late arrival).
fn fixture() -> (Vec<Envelope>, Vec<Envelope>) {
    let first = vec![
        ev(
            1,
            at(1, 8),
            "user.registered.v1",
            json!({"user_id": id(1), "email": "alice@example.com", "display_name": "Alice", "country": "DE", "role": "customer", "registered_at": "2026-10-15T00:00:00Z"}),
        ),
        ev(
            2,
            at(1, 8),
            "user.registered.v1",
            json!({"user_id": id(2), "email": "bob@example.org", "display_name": "Bob", "country": "FR", "role": "customer", "registered_at": "2026-11-01T08:00:00Z"}),
        ),
        ev(
            3,
            at(1, 7),
            "product.created.v1",
            json!({"product_id": id(101), "sku": "SKU-101", "vendor_id": id(201), "category": "books", "title": "A book", "price": eur(1000), "weight_grams": 300, "attributes": [], "status": "active"}),
        ),
        ev(
            4,
            at(1, 7),
            "product.created.v1",
            json!({"product_id": id(102), "sku": "SKU-102", "vendor_id": id(202), "category": "toys", "title": "A toy", "price": eur(2500), "weight_grams": 500, "attributes": [], "status": "active"}),
        ),
        ev(
            5,
            at(2, 0),
            "price.changed.v1",
            json!({"product_id": id(101), "sku": "SKU-101", "old_price": eur(1000), "new_price": eur(1200), "reason": "seasonal"}),
        ),
        ev(
            10,
            at(1, 9),
            "product.viewed.v1",
            json!({"session_id": id(501), "user_id": id(1), "product_id": id(101), "device_id": "dev-1", "referrer": null}),
        ),
        ev(
            11,
            at(1, 9),
            "product.viewed.v1",
            json!({"session_id": id(502), "user_id": id(2), "product_id": id(102), "device_id": "dev-2", "referrer": null}),
        ),
        ev(
            12,
            at(1, 9),
            "product.viewed.v1",
            json!({"session_id": id(503), "user_id": null, "product_id": id(102), "device_id": "dev-3", "referrer": "search"}),
        ),
        ev(
            13,
            at(1, 9),
            "cart.item_added.v1",
            json!({"cart_id": id(601), "session_id": id(501), "user_id": id(1), "product_id": id(101), "sku": "SKU-101", "quantity": 2, "unit_price": eur(1000)}),
        ),
        ev(
            14,
            at(1, 9),
            "cart.item_added.v1",
            json!({"cart_id": id(602), "session_id": id(502), "user_id": id(2), "product_id": id(102), "sku": "SKU-102", "quantity": 1, "unit_price": eur(2500)}),
        ),
        ev(
            15,
            at(1, 10),
            "checkout.started.v1",
            json!({"checkout_id": id(701), "cart_id": id(601), "session_id": id(501), "user_id": id(1), "item_count": 1, "total": eur(2500)}),
        ),
        order(20, 301, 1, at(1, 10), &[(101, 2, 1000)], 500),
        order(20, 301, 1, at(1, 10), &[(101, 2, 1000)], 500), // delivered twice
        ev(
            21,
            at(1, 10),
            "payment.authorized.v1",
            json!({"payment_id": id(1201), "order_id": id(301), "customer_id": id(1), "amount": eur(2500), "gateway": "simulator", "card_fingerprint": "fp_1", "auth_code": "A1"}),
        ),
        confirmed(22, 301, 1, at(1, 10), 2500),
        order(30, 302, 2, at(1, 11), &[(102, 1, 2500)], 0),
        ev(
            31,
            at(1, 11),
            "payment.failed.v1",
            json!({"payment_id": id(1202), "order_id": id(302), "customer_id": id(2), "amount": eur(2500), "gateway": "simulator", "card_fingerprint": "fp_2", "reason": "insufficient_funds"}),
        ),
        ev(
            32,
            at(1, 11),
            "order.cancelled.v1",
            json!({"order_id": id(302), "customer_id": id(2), "reason": "payment_declined", "detail": null}),
        ),
        order(40, 303, 1, at(2, 12), &[(101, 1, 1200)], 0),
        confirmed(41, 303, 1, at(2, 12), 1200),
    ];
    let late = vec![
        order(50, 304, 2, at(3, 9), &[(101, 1, 1200), (102, 2, 2500)], 0),
        confirmed(51, 304, 2, at(3, 9), 6200),
        // The second delivery of order 303's confirmation, in a later batch.
        confirmed(41, 303, 1, at(2, 12), 1200),
    ];
    (first, late)
}

/// Runs one `.slt` file: `statement ok`, `statement error <text>` (the error must contain the
/// text), and `query <types> [rowsort]` with the expected rows after `----`, values separated
/// by single spaces (NULL for nulls). `-- as admin` / `-- as analyst` switch the access.
async fn run_slt(engine: Front<'_>, path: &std::path::Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut access = Access::Analyst;
    let mut checked = 0;
    let records = text.split("\n\n").map(str::trim).filter(|r| !r.is_empty());
    for record in records {
        let lines: Vec<&str> = record.lines().filter(|l| !l.starts_with('#')).collect();
        let Some((head, body)) = lines.split_first() else {
            continue;
        };
        let (sql_lines, expected) = match body.iter().position(|l| *l == "----") {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let sql = sql_lines.join("\n");
        let at = format!("{}: {head}\n{sql}", path.display());
        if let Some(role) = sql.trim().strip_prefix("-- as ") {
            access = if role.trim() == "admin" {
                Access::Admin
            } else {
                Access::Analyst
            };
            continue;
        }
        let result = engine.query(&sql, access).await;
        let words: Vec<&str> = head.split_whitespace().collect();
        match words.as_slice() {
            ["statement", "ok"] => {
                result.map_err(|e| format!("{at}\nfailed: {e}"))?;
            }
            ["statement", "error", want @ ..] => {
                let want = want.join(" ").to_lowercase();
                match result {
                    Ok(_) => {
                        return Err(format!("{at}\nsucceeded, expected an error with {want:?}"));
                    }
                    Err(e) if e.to_string().to_lowercase().contains(&want) => {}
                    Err(e) => return Err(format!("{at}\nfailed with {e}, expected {want:?}")),
                }
            }
            ["query", _types, rest @ ..] => {
                let r = result.map_err(|e| format!("{at}\nfailed: {e}"))?;
                let mut got: Vec<String> = Vec::new();
                for b in &r.batches {
                    for i in 0..b.num_rows() {
                        let row: Vec<String> = b
                            .columns()
                            .iter()
                            .map(|c| {
                                if c.is_null(i) {
                                    "NULL".to_owned()
                                } else {
                                    array_value_to_string(c, i).unwrap_or_else(|e| e.to_string())
                                }
                            })
                            .collect();
                        got.push(row.join(" "));
                    }
                }
                let mut want: Vec<String> = expected
                    .unwrap_or_default()
                    .iter()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect();
                if rest.contains(&"rowsort") {
                    got.sort();
                    want.sort();
                }
                if got != want {
                    return Err(format!(
                        "{at}\nexpected:\n{}\ngot:\n{}",
                        want.join("\n"),
                        got.join("\n")
                    ));
                }
            }
            other => return Err(format!("{at}\nunknown record {other:?}")),
        }
        checked += 1;
    }
    Ok(checked)
}

/// What runs the `.slt` files: the analysts' engine, or Ballista over the same tables.
#[derive(Clone, Copy)]
enum Front<'a> {
    Engine(&'a SqlEngine),
    Ballista(&'a BallistaSql),
}

impl Front<'_> {
    async fn query(&self, sql: &str, access: Access) -> Result<QueryResult, QueryError> {
        match self {
            Front::Engine(e) => e.query(sql, "slt", access).await,
            Front::Ballista(b) => {
                assert_eq!(
                    access,
                    Access::Analyst,
                    "Ballista serves the analysts' gold view"
                );
                b.query(sql, "slt").await
            }
        }
    }
}

fn slt_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    v.sort();
    assert!(v.len() >= 3, "{v:?}");
    v
}

async fn run_all(engine: Front<'_>, files: &[PathBuf]) -> usize {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in files {
        match run_slt(engine, file).await {
            Ok(n) => checked += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    checked
}

async fn built_lake() -> (Lake, PathBuf) {
    let dir = std::env::temp_dir().join(format!("warehouse-slt-{}", Uuid::now_v7().simple()));
    let lake = Lake::new(&dir);
    let (first, late) = fixture();
    bronze::append(&lake, &first).await.unwrap();
    models::build(&lake, false).await.unwrap();
    bronze::append(&lake, &late).await.unwrap();
    let report = models::build(&lake, false).await.unwrap();
    // Only the dates the late batch touched are re-derived.
    let orders = report
        .silver_dates
        .iter()
        .find(|(f, _)| f == "orders")
        .unwrap();
    assert_eq!(orders.1, 2, "{report:?}");
    (lake, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn gold_models_on_the_fixture() {
    let (lake, dir) = built_lake().await;
    let engine = SqlEngine::open(lake, &WarehouseConfig::default())
        .await
        .unwrap();
    let checked = run_all(Front::Engine(&engine), &slt_files()).await;
    assert!(checked >= 20, "{checked} records checked");
    let _ = std::fs::remove_dir_all(dir);
}

/// The same `.slt` files (all but the access-control one, which needs the admin view) on
/// Ballista: an in-process scheduler and executor, the plans shipped over gRPC, the gold
/// tables read as the Parquet files of their current Delta version.
#[tokio::test(flavor = "multi_thread")]
async fn the_gold_sql_gives_the_same_answers_on_ballista() {
    let (lake, dir) = built_lake().await;
    // The second build overwrote every gold table: the first build's files are still on disk
    // (not vacuumed), so reading the directories instead of the Delta snapshot would count
    // rows twice and fail the files below.
    let on_disk = std::fs::read_dir(lake.path(Layer::Gold, "fact_orders"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count();
    let live = lake
        .open(Layer::Gold, "fact_orders")
        .await
        .unwrap()
        .get_file_uris()
        .unwrap()
        .count();
    assert!(on_disk > live, "{on_disk} files on disk, {live} live");

    let ballista = BallistaSql::connect(lake.clone(), Cluster::Standalone, &Default::default())
        .await
        .unwrap();
    let files: Vec<PathBuf> = slt_files()
        .into_iter()
        .filter(|f| !f.to_string_lossy().ends_with("_access.slt"))
        .collect();
    let checked = run_all(Front::Ballista(&ballista), &files).await;
    let engine = SqlEngine::open(lake.clone(), &WarehouseConfig::default())
        .await
        .unwrap();
    assert_eq!(checked, run_all(Front::Engine(&engine), &files).await);
    assert!(checked >= 10, "{checked} records checked");
    // Writes are refused there too, and audited as Ballista's.
    let e = ballista
        .query("DELETE FROM fact_orders", "slt")
        .await
        .unwrap_err();
    assert!(matches!(e, QueryError::ReadOnly(_)), "{e}");
    let audit = std::fs::read_to_string(lake.root().join("audit.jsonl")).unwrap();
    assert!(audit.contains("ballista standalone"), "{audit}");

    // A new gold version is followed: a later late event changes fact_orders' answer.
    let before = ballista
        .query("SELECT count(*) FROM fact_orders", "slt")
        .await
        .unwrap();
    let more = vec![order(9_001, 9_001, 1, at(4, 9), &[(101, 1, 700)], 0)];
    bronze::append(&lake, &more).await.unwrap();
    models::build(&lake, false).await.unwrap();
    let after = ballista
        .query("SELECT count(*) FROM fact_orders", "slt")
        .await
        .unwrap();
    let count = |r: &QueryResult| array_value_to_string(r.batches[0].column(0), 0).unwrap();
    assert_eq!(
        count(&after).parse::<i64>().unwrap(),
        count(&before).parse::<i64>().unwrap() + 1
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A query that runs past `query_timeout_secs` fails inside execution (the limit the
/// PostgreSQL protocol relies on, where results stream to the client), not only at the
/// caller's timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_query_past_its_time_limit_is_cancelled_in_execution() {
    let dir = std::env::temp_dir().join(format!("warehouse-deadline-{}", Uuid::now_v7().simple()));
    let engine = SqlEngine::open(
        Lake::new(&dir),
        &WarehouseConfig {
            query_timeout_secs: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Tens of seconds of work without the limit.
    let sql = "SELECT sum(value % 7) FROM generate_series(1, 50000000000)";
    let ctx = engine.context(Access::Analyst);
    let started = std::time::Instant::now();
    let err = ctx.sql(sql).await.unwrap().collect().await.unwrap_err();
    assert!(err.to_string().contains("ran longer than 1s"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let plan = ctx
        .sql(&format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(text.contains("DeadlineExec"), "{text}");
    // A quick query is untouched.
    let r = engine
        .query(
            "SELECT sum(value) FROM generate_series(1, 1000)",
            "t",
            Access::Analyst,
        )
        .await
        .unwrap();
    assert_eq!(
        array_value_to_string(r.batches[0].column(0), 0).unwrap(),
        "500500"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// An analyst's query, its answer as a text table.
async fn analyst_table(e: &SqlEngine, sql: &str) -> String {
    let r = e.query(sql, "t", Access::Analyst).await.unwrap();
    datafusion::arrow::util::pretty::pretty_format_batches(&r.batches)
        .unwrap()
        .to_string()
}

/// Every gold table, sorted, as text.
async fn gold_snapshot(e: &SqlEngine) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for m in models::GOLD {
        let sql = format!("SELECT * FROM {} ORDER BY 1, 2, 3", m.name);
        out.push((m.name, analyst_table(e, &sql).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_changes_nothing() {
    let (lake, dir) = built_lake().await;
    let engine = SqlEngine::open(lake.clone(), &WarehouseConfig::default())
        .await
        .unwrap();
    let before = gold_snapshot(&engine).await;
    let again = models::build(&lake, false).await.unwrap();
    assert!(again.silver_dates.iter().all(|(_, n)| *n == 0), "{again:?}");
    assert!(
        again
            .gold
            .iter()
            .all(|g| g.scope == models::Scope::Unchanged),
        "{again:?}"
    );
    assert_eq!(
        gold_snapshot(&engine).await,
        before,
        "an incremental build with nothing new"
    );
    models::build(&lake, true).await.unwrap();
    assert_eq!(gold_snapshot(&engine).await, before, "a full rebuild");
    let _ = std::fs::remove_dir_all(dir);
}

/// Gold tables are scanned as Parquet listings of their current Delta version's files: the
/// plan is DataFusion's Parquet scan, and after builds that rewrite a table (its old files
/// stay on disk until vacuum) an engine opened before them reads each row once.
#[tokio::test(flavor = "multi_thread")]
async fn gold_scans_read_the_live_files_of_the_latest_version() {
    let (lake, dir) = built_lake().await;
    let engine = SqlEngine::open(lake.clone(), &WarehouseConfig::default())
        .await
        .unwrap();
    let count = |sql: &'static str| {
        let engine = engine.clone();
        async move {
            let r = engine.query(sql, "t", Access::Analyst).await.unwrap();
            array_value_to_string(r.batches[0].column(0), 0).unwrap()
        }
    };
    let orders = "SELECT count(*) FROM gold.fact_orders WHERE status <> 'none'";
    assert_eq!(count(orders).await, "4");

    let plan = analyst_table(
        &engine,
        "EXPLAIN SELECT order_id FROM gold.fact_orders WHERE status = 'confirmed'",
    )
    .await;
    assert!(
        plan.contains("DataSourceExec") && plan.contains("file_type=parquet"),
        "{plan}"
    );
    assert!(!plan.contains("DeltaScan"), "{plan}");

    bronze::append(&lake, &[order(70, 306, 2, at(4, 9), &[(102, 1, 2500)], 0)])
        .await
        .unwrap();
    models::build(&lake, false).await.unwrap();
    assert_eq!(count(orders).await, "5", "the new order, once");
    models::build(&lake, true).await.unwrap();
    models::build(&lake, true).await.unwrap();
    assert_eq!(count(orders).await, "5", "after two full rebuilds");
    let _ = std::fs::remove_dir_all(dir);
}

/// The SQL `cohort_retention` and `rfm_segments` were before they became Polars jobs
/// (`warehouse::batch`), with the quintiles' ties broken by customer id as the jobs do (SQL
/// leaves their order open).
const COHORT_SQL: &str = "
WITH orders AS (
    SELECT customer_id, date_trunc('month', placed_at) AS month
    FROM gold.fact_orders WHERE status = 'confirmed'
), firsts AS (
    SELECT customer_id, min(month) AS cohort_month FROM orders GROUP BY customer_id
), sizes AS (
    SELECT cohort_month, count(*) AS cohort_size FROM firsts GROUP BY cohort_month
), active AS (
    SELECT f.cohort_month, o.month, count(DISTINCT o.customer_id) AS customers
    FROM orders o JOIN firsts f ON f.customer_id = o.customer_id
    GROUP BY f.cohort_month, o.month
)
SELECT a.cohort_month,
       CAST((date_part('year', a.month) - date_part('year', a.cohort_month)) * 12
            + date_part('month', a.month) - date_part('month', a.cohort_month) AS BIGINT) AS months_since,
       s.cohort_size, a.customers, CAST(a.customers AS DOUBLE) / s.cohort_size AS retention
FROM active a JOIN sizes s ON s.cohort_month = a.cohort_month
ORDER BY 1, 2";

const RFM_SQL: &str = "
WITH per_customer AS (
    SELECT customer_id, max(placed_at) AS last_order_at, count(*) AS frequency,
           sum(total_minor) AS monetary_minor
    FROM gold.fact_orders WHERE status = 'confirmed'
    GROUP BY customer_id
), scored AS (
    SELECT *,
           CAST(date_part('day', (SELECT max(placed_at) FROM gold.fact_orders) - last_order_at) AS BIGINT) AS recency_days,
           ntile(5) OVER (ORDER BY last_order_at, customer_id) AS r,
           ntile(5) OVER (ORDER BY frequency, customer_id) AS f,
           ntile(5) OVER (ORDER BY monetary_minor, customer_id) AS m
    FROM per_customer
)
SELECT customer_id, last_order_at, recency_days, frequency, monetary_minor,
       CAST(r AS BIGINT) AS recency_score, CAST(f AS BIGINT) AS frequency_score,
       CAST(m AS BIGINT) AS monetary_score,
       CASE WHEN r >= 4 AND f >= 4 THEN 'champions'
            WHEN f >= 4 THEN 'loyal'
            WHEN r >= 4 AND f <= 2 THEN 'new_or_promising'
            WHEN r <= 2 AND f >= 3 THEN 'at_risk'
            WHEN r <= 2 THEN 'hibernating'
            ELSE 'needs_attention' END AS segment
FROM scored
ORDER BY customer_id";

/// The Polars jobs give what the SQL gave, on simulator traffic over about three months
/// (several cohorts, repeat buyers, ties in frequency and amounts).
#[tokio::test(flavor = "multi_thread")]
async fn the_polars_models_equal_their_sql_definitions_on_simulator_traffic() {
    use ingest::simulate::{Generator, SimConfig};
    let dir = std::env::temp_dir().join(format!("warehouse-polars-{}", Uuid::now_v7().simple()));
    let lake = Lake::new(&dir);
    let events: Vec<Envelope> = Generator::new(SimConfig {
        customers: 400,
        sessions_per_sec: 0.001,
        ..SimConfig::default()
    })
    .take(40_000)
    .collect();
    let days = (events.last().unwrap().time - events[0].time).num_days();
    assert!(days >= 60, "the traffic spans {days} days");
    bronze::append(&lake, &events).await.unwrap();
    models::build(&lake, false).await.unwrap();
    let engine = SqlEngine::open(lake, &WarehouseConfig::default())
        .await
        .unwrap();
    let cohorts = analyst_table(&engine, "SELECT * FROM cohort_retention ORDER BY 1, 2").await;
    assert_eq!(cohorts, analyst_table(&engine, COHORT_SQL).await);
    assert!(cohorts.lines().count() > 10, "{cohorts}");
    let rfm = analyst_table(&engine, "SELECT * FROM rfm_segments ORDER BY customer_id").await;
    assert_eq!(rfm, analyst_table(&engine, RFM_SQL).await);
    assert!(rfm.lines().count() > 100, "{rfm}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Gold recomputes only the dates a change reaches: an order placed on day 4 and confirmed
/// on day 5 changes day 4's rows; a product's new category (day 3) changes the lines ordered
/// from day 3 on; days 1 and 2 are left alone. The result equals a full rebuild.
#[tokio::test(flavor = "multi_thread")]
async fn gold_recomputes_only_the_dates_a_change_reaches() {
    let (lake, dir) = built_lake().await;
    let day = |d: u32| warehouse::bronze::date32(at(d, 0));
    let scope = |r: &models::BuildReport, m: &str| {
        r.gold
            .iter()
            .find(|g| g.model == m)
            .unwrap_or_else(|| panic!("{m} not in {r:?}"))
            .scope
            .clone()
    };
    use models::Scope::{Dates, Unchanged, Whole};

    bronze::append(&lake, &[order(60, 305, 1, at(4, 9), &[(101, 1, 1200)], 0)])
        .await
        .unwrap();
    let r = models::build(&lake, false).await.unwrap();
    assert_eq!(scope(&r, "fact_orders"), Dates(vec![day(4)]), "{r:?}");
    assert_eq!(scope(&r, "fact_payments"), Unchanged, "{r:?}");
    assert_eq!(scope(&r, "dim_product"), Unchanged, "{r:?}");

    bronze::append(
        &lake,
        &[
            confirmed(61, 305, 1, at(5, 9), 1200),
            ev(
                62,
                at(3, 0),
                "product.updated.v1",
                json!({"product_id": id(102), "sku": "SKU-102", "title": null, "category": "games", "status": null, "attributes": null}),
            ),
        ],
    )
    .await
    .unwrap();
    let r = models::build(&lake, false).await.unwrap();
    // The confirmation is on day 5, the order's row on day 4.
    assert_eq!(scope(&r, "fact_orders"), Dates(vec![day(4)]), "{r:?}");
    assert_eq!(scope(&r, "daily_revenue"), Dates(vec![day(4)]), "{r:?}");
    assert_eq!(scope(&r, "funnel_daily"), Dates(vec![day(4)]), "{r:?}");
    // The product change reaches the lines of days 3 (order 304) and 4 (order 305).
    assert_eq!(scope(&r, "dim_product"), Whole, "{r:?}");
    assert_eq!(
        scope(&r, "fact_order_items"),
        Dates(vec![day(3), day(4)]),
        "{r:?}"
    );
    assert_eq!(
        scope(&r, "vendor_commissions"),
        Dates(vec![day(3), day(4)]),
        "{r:?}"
    );
    assert_eq!(scope(&r, "fact_page_views"), Unchanged, "{r:?}");
    assert_eq!(scope(&r, "dim_customer"), Unchanged, "{r:?}");
    assert_eq!(scope(&r, "cohort_retention"), Whole, "{r:?}");

    let engine = SqlEngine::open(lake.clone(), &WarehouseConfig::default())
        .await
        .unwrap();
    let one = |sql: &'static str| {
        let e = engine.clone();
        async move {
            let r = e.query(sql, "t", Access::Analyst).await.unwrap();
            let b = &r.batches[0];
            (0..b.num_columns())
                .map(|c| array_value_to_string(b.column(c), 0).unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    assert_eq!(
        one("SELECT status, CAST(order_date AS VARCHAR) FROM fact_orders WHERE total_minor = 1200 AND order_date = DATE '2026-11-04'").await,
        "confirmed 2026-11-04"
    );
    assert_eq!(
        one("SELECT category FROM fact_order_items WHERE order_date = DATE '2026-11-03' AND sku = 'SKU-102'").await,
        "games"
    );
    // Before the change (day 1) the toy was still a toy.
    assert_eq!(
        one("SELECT category FROM fact_order_items WHERE order_date = DATE '2026-11-01' AND sku = 'SKU-102'").await,
        "toys"
    );
    let incremental = gold_snapshot(&engine).await;
    let full = models::build(&lake, true).await.unwrap();
    assert!(full.gold.iter().all(|g| g.scope == Whole), "{full:?}");
    assert_eq!(gold_snapshot(&engine).await, incremental);
    let _ = std::fs::remove_dir_all(dir);
}

/// A crash after silver but before gold leaves the changed dates owed: the next build still
/// brings gold up to date.
#[tokio::test(flavor = "multi_thread")]
async fn gold_catches_up_after_a_build_that_stopped_before_it() {
    let (lake, dir) = built_lake().await;
    bronze::append(&lake, &[order(60, 305, 1, at(4, 9), &[(101, 1, 1200)], 0)])
        .await
        .unwrap();
    // Make gold fail after silver is done: a file where fact_orders' log should be.
    let log = lake.path(Layer::Gold, "fact_orders").join("_delta_log");
    let aside = log.with_file_name("_delta_log.aside");
    std::fs::rename(&log, &aside).unwrap();
    std::fs::write(&log, b"not a directory").unwrap();
    let failed = models::build(&lake, false).await;
    assert!(failed.is_err(), "{failed:?}");
    std::fs::remove_file(&log).unwrap();
    std::fs::rename(&aside, &log).unwrap();

    let r = models::build(&lake, false).await.unwrap();
    assert!(
        r.silver_dates.iter().all(|(_, n)| *n == 0),
        "silver was done: {r:?}"
    );
    let orders = r.gold.iter().find(|g| g.model == "fact_orders").unwrap();
    assert_eq!(
        orders.scope,
        models::Scope::Dates(vec![warehouse::bronze::date32(at(4, 0))]),
        "{r:?}"
    );
    let engine = SqlEngine::open(lake, &WarehouseConfig::default())
        .await
        .unwrap();
    let r = engine
        .query(
            "SELECT count(*) FROM fact_orders WHERE order_date = DATE '2026-11-04'",
            "t",
            Access::Analyst,
        )
        .await
        .unwrap();
    assert_eq!(
        array_value_to_string(r.batches[0].column(0), 0).unwrap(),
        "1"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn old_partitions_move_to_cold_and_are_counted_once() {
    use warehouse::tiers::{TierOptions, tier};
    let (lake, dir) = built_lake().await;
    let engine = SqlEngine::open(lake.clone(), &WarehouseConfig::default())
        .await
        .unwrap();
    let q = |sql: &'static str| {
        let engine = engine.clone();
        async move {
            let r = engine.query(sql, "t", Access::Admin).await.unwrap();
            datafusion::arrow::util::pretty::pretty_format_batches(&r.batches)
                .unwrap()
                .to_string()
        }
    };
    let counts = "SELECT CAST(event_date AS VARCHAR) AS d, count(*) AS n FROM bronze.orders GROUP BY event_date ORDER BY d";
    let before = q(counts).await;
    let revenue = "SELECT * FROM daily_revenue ORDER BY order_date";
    let revenue_before = q(revenue).await;

    // Today is 2026-11-05; partitions older than 3 days (2026-11-01) go cold.
    let today = warehouse::bronze::date32(at(5, 0));
    let opts = TierOptions {
        cold_after_days: 3,
        retention_days: None,
        vacuum_hours: 0,
        today,
    };
    let report = tier(&lake, &opts).await.unwrap();
    let moved = report.moved.iter().find(|(t, _)| t == "orders").unwrap().1;
    assert_eq!(moved, 5, "{report:?}");
    assert!(
        report.vacuumed > 0,
        "warm's deleted files are vacuumed: {report:?}"
    );
    // The logical table is unchanged: warm + cold, nothing twice, nothing lost.
    assert_eq!(q(counts).await, before);
    assert!(
        q("SELECT count(*) AS n FROM cold.orders")
            .await
            .contains("| 5 |")
    );
    // Silver and gold rebuilt from the tiered bronze are the same.
    models::build(&lake, true).await.unwrap();
    assert_eq!(q(revenue).await, revenue_before);

    // A late event for the cold date lands in warm and is counted; tiering again moves it.
    let late = order(60, 305, 1, at(1, 23), &[(102, 1, 2500)], 0);
    bronze::append(&lake, &[late]).await.unwrap();
    let with_late = q(counts).await;
    assert!(with_late.contains("| 2026-11-01 | 6 |"), "{with_late}");
    let again = tier(&lake, &opts).await.unwrap();
    assert_eq!(
        again.moved.iter().find(|(t, _)| t == "orders").unwrap().1,
        1
    );
    assert_eq!(q(counts).await, with_late);
    let again = tier(&lake, &opts).await.unwrap();
    assert_eq!(
        again.moved.iter().find(|(t, _)| t == "orders").unwrap().1,
        0,
        "idempotent"
    );

    // Retention: cold partitions older than 3 days from 2026-11-05 are dropped.
    let mut cold_rows = 0;
    for t in lake.tables(warehouse::Layer::Cold) {
        let r = engine
            .query(
                &format!("SELECT count(*) FROM cold.{t}"),
                "t",
                Access::Admin,
            )
            .await
            .unwrap();
        let n = r.batches[0].column(0).as_any();
        cold_rows += n
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
    }
    let keep = TierOptions {
        retention_days: Some(3),
        ..opts
    };
    let expired = tier(&lake, &keep).await.unwrap();
    assert_eq!(
        expired.expired as i64, cold_rows,
        "every cold row is from 2026-11-01: {expired:?}"
    );
    let after = q(counts).await;
    assert!(
        !after.contains("2026-11-01") && after.contains("2026-11-02"),
        "{after}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_rows_are_queryable_before_the_loader_commits_them_and_count_once() {
    use warehouse::bronze::{LoaderOptions, run_loader};
    use warehouse::hot::{self, HotOptions};
    let kafka = ingest::KafkaConfig {
        brokers: std::env::var("SHOPSTREAM_KAFKA_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: format!("it-wh-{}.", Uuid::now_v7().simple()),
        ..Default::default()
    };
    ingest::TopicAdmin::new(&kafka)
        .unwrap()
        .apply(&kafka.topic_names().plan())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("warehouse-hot-{}", Uuid::now_v7().simple()));
    let lake = Lake::new(&dir);
    let producer = ingest::EventProducer::new(&kafka).unwrap();
    let (first, late) = fixture();
    producer.publish_all(&first).await.unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let idle = LoaderOptions {
        stop_when_idle: Some(std::time::Duration::from_secs(1)),
        ..Default::default()
    };
    run_loader(&kafka, &lake, &idle, rx.clone()).await.unwrap();

    let (stop_hot, hot_rx) = tokio::sync::watch::channel(false);
    let (tier, task) = hot::start(&kafka, &lake, HotOptions::default(), hot_rx)
        .await
        .unwrap();
    let engine = SqlEngine::open_with_hot(
        lake.clone(),
        &WarehouseConfig::default(),
        Some(tier.clone()),
    )
    .await
    .unwrap();
    let count = || async {
        let r = engine
            .query("SELECT count(*) AS n, count(DISTINCT kafka_offset * 100 + kafka_partition) AS d FROM bronze.orders", "t", Access::Admin)
            .await
            .unwrap();
        let col = |i: usize| {
            r.batches[0]
                .column(i)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap()
                .value(0)
        };
        (col(0), col(1))
    };
    assert_eq!(count().await, (7, 7), "warm only");

    // Produced, not loaded: visible from the hot tier within moments.
    let sent = std::time::Instant::now();
    producer.publish_all(&late).await.unwrap();
    while count().await != (10, 10) {
        assert!(
            sent.elapsed() < std::time::Duration::from_secs(30),
            "hot rows never became visible: {:?}",
            count().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(tier.family("orders").unwrap().lock().unwrap().rows() >= 3);
    // The loader commits them: still counted once (warm now, hot rows past its offsets only).
    run_loader(&kafka, &lake, &idle, rx).await.unwrap();
    assert_eq!(count().await, (10, 10), "after the loader caught up");
    let _ = stop_hot.send(true);
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_outside_data_joins_the_models() {
    use warehouse::sql::{Attachment, attach};
    let (lake, dir) = built_lake().await;
    let csv = dir.join("regions.csv");
    std::fs::write(&csv, "country,region\nDE,EU-central\nFR,EU-west\n").unwrap();
    let schema = attach(
        &lake,
        Attachment {
            name: "regions".into(),
            path: csv.to_string_lossy().into_owned(),
            format: "csv".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(schema.fields().len(), 2);
    for (name, format) in [("bad name!", "csv"), ("x", "xlsx")] {
        let bad = Attachment {
            name: name.into(),
            path: csv.to_string_lossy().into_owned(),
            format: format.into(),
        };
        assert!(attach(&lake, bad).await.is_err(), "{name} {format}");
    }
    let engine = SqlEngine::open(lake, &WarehouseConfig::default())
        .await
        .unwrap();
    let text = analyst_table(
        &engine,
        "SELECT r.region, count(*) AS n FROM dim_customer c JOIN ext.regions r ON r.country = c.country GROUP BY r.region ORDER BY r.region",
    )
    .await;
    assert!(
        text.contains("| EU-central | 1 |") && text.contains("| EU-west    | 1 |"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
