//! The warehouse from the command line: the loader SIGKILLed mid-stream and restarted lands
//! every event exactly once, undecodable records go to the DLQ, the gold models equal the
//! ground truth of the generated events, builds are idempotent, SQL is read-only and masks
//! PII for analysts, and psql connects over the PostgreSQL protocol.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use events::Event;
use ingest::simulate::{Generator, SimConfig};

use super::{
    brokers, free_port, kcat_consume, private_database, shopstream, text, unique_prefix,
    warehouse_dir, warehouse_sql,
};

fn family(e: &events::Envelope) -> String {
    e.topic().base_name().replace(['.', '-'], "_")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_warehouse_loads_exactly_once_through_a_sigkill_and_its_models_match_the_truth() {
    let prefix = unique_prefix();
    let lake = warehouse_dir(&prefix);
    let env = [
        ("SHOPSTREAM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SHOPSTREAM_KAFKA_BROKERS", &brokers()),
        ("SHOPSTREAM_WAREHOUSE_DIR", lake.as_str()),
        ("SHOPSTREAM_WAREHOUSE_BATCH_ROWS", "4000"),
        ("SHOPSTREAM_WAREHOUSE_COMMIT_INTERVAL_MS", "100"),
    ];
    let out = shopstream(&["topics", "apply"], &env);
    assert!(out.status.success(), "{}", text(&out));

    // Three simulated days of traffic, and the truth about it.
    let mut generator = Generator::new(SimConfig {
        seed: 9,
        products: 200,
        customers: 3_000,
        sessions_per_sec: 0.1,
        fraud_rate: 0.03,
        ..SimConfig::default()
    });
    let events: Vec<events::Envelope> = generator.by_ref().take(150_000).collect();
    let labels = generator.take_labels();
    let mut rows: BTreeMap<String, i64> = BTreeMap::new();
    let mut placed_on = std::collections::HashMap::new();
    let mut revenue: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in &events {
        *rows.entry(family(e)).or_default() += 1;
        match &e.event {
            Event::OrderPlaced(o) => {
                placed_on.insert(o.order_id, e.time.date_naive().to_string());
            }
            Event::OrderConfirmed(o) => {
                let day = placed_on[&o.order_id].clone();
                let r = revenue.entry(day).or_default();
                r.0 += 1;
                r.1 += o.total.amount_minor;
            }
            _ => {}
        }
    }
    assert!(
        revenue.len() >= 2,
        "the events span several days: {revenue:?}"
    );

    let cfg = ingest::KafkaConfig {
        brokers: brokers(),
        topic_prefix: prefix.clone(),
        ..ingest::KafkaConfig::default()
    };
    let producer = ingest::EventProducer::new(&cfg).unwrap();
    // One undecodable record in the middle of the orders.
    let (head, tail) = events.split_at(events.len() / 2);
    for chunk in head.chunks(10_000) {
        producer.publish_all(chunk).await.unwrap();
    }
    let broken = events::Envelope::new("/test", events::samples()[0].clone());
    let orders_topic = format!("{prefix}orders");
    producer
        .send_raw(
            &orders_topic,
            Some(b"k"),
            Some(b"{not json"),
            ingest::kafka::envelope_headers(&events::Envelope {
                event: events::samples()
                    .into_iter()
                    .find(|e| e.event_type() == "order.placed.v1")
                    .unwrap(),
                ..broken
            }),
        )
        .await
        .unwrap();
    for chunk in tail.chunks(10_000) {
        producer.publish_all(chunk).await.unwrap();
    }

    // Load, and SIGKILL the loader once some but not all of it is committed.
    let spawn = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shopstream"));
        c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().unwrap()
    };
    let log = std::path::Path::new(&lake).join("bronze/clickstream/_delta_log");
    let mut loader = spawn(&["warehouse", "load"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log.join("00000000000000000003.json").exists() {
        assert!(Instant::now() < deadline, "the loader never committed");
        std::thread::sleep(Duration::from_millis(5));
    }
    loader.kill().unwrap();
    loader.wait().unwrap();
    let count = |sql: &str| -> i64 {
        let r = super::warehouse_sql_admin(&env, sql);
        r[0]["n"].as_i64().unwrap()
    };
    let total: i64 = rows.values().sum();
    let before = count("SELECT count(*) AS n FROM bronze.clickstream");
    assert!(
        before > 0 && before < rows["clickstream"],
        "killed at {before} of {} rows: nothing tested",
        rows["clickstream"]
    );

    let out = shopstream(&["warehouse", "load", "--until-idle", "3"], &env);
    assert!(out.status.success(), "{}", text(&out));
    for (table, want) in &rows {
        let got = super::warehouse_sql_admin(
            &env,
            &format!("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM bronze.{table}"),
        );
        assert_eq!(
            (got[0]["n"].as_i64().unwrap(), got[0]["d"].as_i64().unwrap()),
            (*want, *want),
            "bronze.{table}: rows and distinct ids after a SIGKILL and restart"
        );
    }
    assert_eq!(
        count("SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'bronze'"),
        11
    );
    // The broken record went to the DLQ, with where it came from.
    let dlq = kcat_consume(&format!("{orders_topic}.dlq"), "%h %s\\n");
    assert!(
        dlq.contains("dlq.origin.topic") && dlq.contains("{not json"),
        "{dlq}"
    );

    // Gold equals the truth; a second build changes nothing and re-derives no date.
    let out = shopstream(&["warehouse", "build"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let daily =
        || -> BTreeMap<String, (i64, i64)> {
            warehouse_sql(
            &env,
            "SELECT CAST(order_date AS VARCHAR) AS day, orders, revenue_minor FROM daily_revenue",
        )
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap().to_owned(),
                (r["orders"].as_i64().unwrap(), r["revenue_minor"].as_i64().unwrap()),
            )
        })
        .collect()
        };
    assert_eq!(daily(), revenue, "daily revenue vs the generated events");
    let out = shopstream(&["warehouse", "build"], &env);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.lines()
            .filter(|l| l.starts_with("silver "))
            .filter(|l| l.contains("date(s)"))
            .all(|l| l.contains(" 0 date(s)")),
        "{log}"
    );
    assert_eq!(daily(), revenue, "after a second build");
    let out = shopstream(&["warehouse", "build", "--full"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(daily(), revenue, "after a full rebuild");
    let lines = warehouse_sql(
        &env,
        "SELECT count(*) AS n, sum(line_total_minor) AS s, count(category) AS c FROM fact_order_items",
    );
    let (want_lines, want_sum) = events.iter().fold((0i64, 0i64), |acc, e| match &e.event {
        Event::OrderPlaced(o) => (
            acc.0 + o.lines.len() as i64,
            acc.1
                + o.lines
                    .iter()
                    .map(|l| l.quantity.get() as i64 * l.unit_price.amount_minor)
                    .sum::<i64>(),
        ),
        _ => acc,
    });
    assert_eq!(lines[0]["n"].as_i64().unwrap(), want_lines);
    assert_eq!(lines[0]["s"].as_i64().unwrap(), want_sum);

    // Analysts: gold only, PII masked; nothing can write.
    let masked = warehouse_sql(&env, "SELECT email_masked FROM dim_customer LIMIT 20");
    assert!(!masked.is_empty());
    assert!(
        masked
            .iter()
            .all(|r| r["email_masked"].as_str().unwrap().contains("***@"))
    );
    for (sql, says) in [
        ("SELECT email FROM silver.user_registered_v1", "not found"),
        ("CREATE TABLE x AS SELECT 1", "read-only"),
        ("DROP TABLE fact_orders", "read-only"),
        (
            "INSERT INTO fact_orders SELECT * FROM fact_orders",
            "read-only",
        ),
        ("SELEC 1", "error"),
    ] {
        let out = shopstream(&["warehouse", "sql", sql], &env);
        let log = text(&out).to_lowercase();
        assert!(!out.status.success() && log.contains(says), "{sql}: {log}");
    }
    let audit = std::fs::read_to_string(std::path::Path::new(&lake).join("audit.jsonl")).unwrap();
    assert!(audit.contains("DROP TABLE fact_orders") && audit.contains("read-only"));

    // The same SQL on Ballista (an in-process scheduler and executor): the same answer.
    let out = shopstream(
        &[
            "warehouse",
            "sql",
            "--ballista",
            "standalone",
            "--format",
            "json",
            "SELECT sum(orders) AS n, sum(revenue_minor) AS r FROM daily_revenue",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: (i64, i64) = revenue
        .values()
        .fold((0, 0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
    assert_eq!(
        (v["rows"][0]["n"].as_i64(), v["rows"][0]["r"].as_i64()),
        (Some(want.0), Some(want.1)),
        "{v}"
    );
    // And on a Ballista cluster of separate processes: one scheduler, two executors; a
    // grouped query shuffles between them over Arrow Flight.
    let spawn = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shopstream"));
        c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        KillOnDrop(c.spawn().unwrap())
    };
    let wait_listening = |port: u16, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{what} never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let scheduler_port = free_port();
    let scheduler_addr = format!("127.0.0.1:{scheduler_port}");
    let _scheduler = spawn(&[
        "warehouse",
        "ballista",
        "scheduler",
        "--bind",
        &scheduler_addr,
    ]);
    wait_listening(scheduler_port, "the ballista scheduler");
    let mut executors = Vec::new();
    for _ in 0..2 {
        let (flight, grpc) = (free_port(), free_port());
        executors.push(spawn(&[
            "warehouse",
            "ballista",
            "executor",
            "--scheduler",
            &scheduler_addr,
            "--flight-port",
            &flight.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--vcores",
            "1",
        ]));
        wait_listening(flight, "a ballista executor");
    }
    let grouped = "SELECT category, count(*) AS n, sum(line_total_minor) AS s FROM fact_order_items \
                   GROUP BY category ORDER BY category";
    let remote = format!("df://{scheduler_addr}");
    let out = shopstream(
        &[
            "warehouse",
            "sql",
            "--ballista",
            &remote,
            "--format",
            "json",
            grouped,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let on_cluster: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let local = warehouse_sql(&env, grouped);
    assert!(local.len() >= 2, "{local:?}");
    assert_eq!(on_cluster["rows"].as_array().unwrap(), &local);
    drop(executors);

    let out = shopstream(
        &["warehouse", "sql", "--ballista", "sched:1", "SELECT 1"],
        &env,
    );
    assert!(
        !out.status.success() && text(&out).contains("df://host:port"),
        "{}",
        text(&out)
    );

    // psql over the PostgreSQL protocol: clients sign in with an access token of a live session
    // with a SQL role; \dt lists the models, queries run, writes are refused, a query past the
    // time limit is cancelled.
    let db = private_database().await;
    let pg_port = free_port();
    let pg_addr = format!("127.0.0.1:{pg_port}");
    let mut server = {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shopstream"));
        c.args(["warehouse", "serve"])
            .env("SHOPSTREAM_WAREHOUSE_PG_ADDR", &pg_addr)
            .env("SHOPSTREAM_WAREHOUSE_QUERY_TIMEOUT_SECS", "2")
            .env("SHOPSTREAM_DATABASE_URL", &db)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&pg_addr).is_err() {
        assert!(Instant::now() < deadline, "the pg server never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Accounts and sessions as the auth service makes them (the server has migrated the
    // database by the time it listens), tokens signed with the configured secret.
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let keys = services::auth::tokens::TokenKeys::new(
        services::app::DEV_JWT_SECRET.as_bytes(),
        Duration::from_secs(900),
        Duration::from_secs(3600),
    );
    let token_for = async |role: events::domain::users::Role| {
        let (user, session) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        sqlx::query(
            "INSERT INTO auth.users (id, email, password_hash, display_name, country) \
             VALUES ($1, $2, 'x', 'Tester', 'DE')",
        )
        .bind(user)
        .bind(format!("{user}@test.invalid"))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO auth.sessions (id, user_id, ip) VALUES ($1, $2, '127.0.0.1')")
            .bind(session)
            .bind(user)
            .execute(&pool)
            .await
            .unwrap();
        (keys.issue_access(user, session, &[role]), user, session)
    };
    let (analyst, analyst_user, analyst_session) =
        token_for(events::domain::users::Role::Analyst).await;
    let (customer, _, _) = token_for(events::domain::users::Role::Customer).await;
    let psql_as = |password: &str, sql: &str| {
        Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg_port.to_string(),
                "-U",
                "ada",
                "-w",
                "-At",
                "-c",
                sql,
            ])
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGPASSWORD", password)
            .output()
            .unwrap()
    };
    let psql = |sql: &str| psql_as(&analyst, sql);
    let out = psql_as("not-a-token", "SELECT 1");
    assert!(
        !out.status.success() && text(&out).contains("access token"),
        "{}",
        text(&out)
    );
    let out = psql_as(&customer, "SELECT 1");
    assert!(
        !out.status.success() && text(&out).contains("analyst, fraud_analyst or admin"),
        "{}",
        text(&out)
    );
    let out = psql("SELECT sum(orders) FROM daily_revenue");
    assert!(out.status.success(), "{}", text(&out));
    let want: i64 = revenue.values().map(|v| v.0).sum();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        want.to_string()
    );
    let out = psql("\\dt");
    assert!(text(&out).contains("fact_orders"), "{}", text(&out));
    let out = psql("DELETE FROM fact_orders");
    assert!(
        !out.status.success() && text(&out).contains("read-only"),
        "{}",
        text(&out)
    );
    let started = Instant::now();
    let out = psql("SELECT sum(value % 7) FROM generate_series(1, 50000000000)");
    assert!(
        !out.status.success() && text(&out).contains("ran longer than 2s"),
        "{}",
        text(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // Audited under the signed-in user.
    let audit = std::fs::read_to_string(std::path::Path::new(&lake).join("audit.jsonl")).unwrap();
    assert!(audit.contains(&format!("pg:{analyst_user}@")), "{audit}");
    // A logout (the session revoked) cuts new sign-ins.
    sqlx::query("UPDATE auth.sessions SET revoked_at = now() WHERE id = $1")
        .bind(analyst_session)
        .execute(&pool)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = psql("SELECT 1");
        if !out.status.success() {
            assert!(text(&out).contains("session revoked"), "{}", text(&out));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a revoked session still signs in"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // Models train from the warehouse: recommendations on the signed-in users' views, carts
    // and purchases; the fraud model on the replayed order events.
    let models = format!("{lake}-models");
    let mut ml_env = env.to_vec();
    ml_env.push(("SHOPSTREAM_SERVICES_MODELS_DIR", models.as_str()));
    let (mut users, mut items) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    for e in &events {
        let (u, i) = match &e.event {
            Event::ProductViewed(v) => (v.user_id, v.product_id),
            Event::CartItemAdded(c) => (c.user_id, c.product_id),
            _ => continue,
        };
        if let Some(u) = u {
            users.insert(u.to_string());
            items.insert(i.to_string());
        }
    }
    let out = shopstream(
        &[
            "ml",
            "train",
            "recs",
            "--epochs",
            "4",
            "--factors",
            "16",
            "--promote",
        ],
        &ml_env,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("recs v1 trained") && log.contains("promoted recs v1"),
        "{log}"
    );
    let out = shopstream(&["ml", "list", "recs", "--json"], &ml_env);
    let listed: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let m = &listed[0];
    assert_eq!(m["promoted"], true);
    assert_eq!(m["metadata"]["source"], "warehouse");
    // Every signed-in viewer or carter is a user of the model (buyers are among them).
    assert!(
        m["metadata"]["metrics"]["users"].as_f64().unwrap() >= users.len() as f64,
        "{m}"
    );
    assert!(m["metadata"]["metrics"]["items"].as_f64().unwrap() >= items.len() as f64);
    assert!(m["metadata"]["data_from"].is_string());
    let label_log = format!("{lake}-labels.jsonl");
    let lines: Vec<String> = labels
        .iter()
        .map(|l| serde_json::to_string(l).unwrap())
        .collect();
    std::fs::write(&label_log, lines.join("\n") + "\n").unwrap();
    let out = shopstream(
        &[
            "ml", "train", "fraud", "--epochs", "100", "--labels", &label_log,
        ],
        &ml_env,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("fraud v1 written") && log.contains("AUPRC"),
        "{log}"
    );
    let model = std::path::Path::new(&models).join("fraud/v1/model.json");
    let loaded = streams::fraud::Model::from_file(&model).unwrap();
    assert!(
        loaded.weights.contains_key("declines_card_30m"),
        "{loaded:?}"
    );
    let _ = std::fs::remove_dir_all(&models);
    let _ = std::fs::remove_file(&label_log);
    let _ = total;
    let _ = std::fs::remove_dir_all(&lake);
}

/// A child process killed when dropped (also when an assertion fails first).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
