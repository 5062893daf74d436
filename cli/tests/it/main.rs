//! The `shopstream` binary as a user runs it: help texts, the contract commands, and
//! `up` against the real local stack, checked from outside with kcat and plain HTTP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shopstream(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopstream"));
    cmd.args(args).current_dir(workspace_root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("shopstream runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn brokers() -> String {
    std::env::var("SHOPSTREAM_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A warehouse directory of a test's own.
fn warehouse_dir(prefix: &str) -> String {
    std::env::temp_dir()
        .join(format!("{}-warehouse", prefix.trim_end_matches('.')))
        .to_string_lossy()
        .into_owned()
}

fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cli-{}-{nanos}.", std::process::id())
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["serve", "--help"],
        vec!["relay", "--help"],
        vec!["migrate", "--help"],
        vec!["simulate", "--help"],
        vec!["grant", "--help"],
        vec!["openapi", "--help"],
        vec!["bench", "checkout", "--help"],
        vec!["bench", "streams", "--help"],
        vec!["bench", "warehouse", "--help"],
        vec!["bench", "ml", "--help"],
        vec!["ml", "--help"],
        vec!["ml", "train", "recs", "--help"],
        vec!["ml", "train", "fraud", "--help"],
        vec!["ml", "eval", "recs", "--help"],
        vec!["ml", "eval", "fraud", "--help"],
        vec!["ml", "list", "--help"],
        vec!["ml", "promote", "--help"],
        vec!["ml", "rollback", "--help"],
        vec!["warehouse", "--help"],
        vec!["warehouse", "load", "--help"],
        vec!["warehouse", "build", "--help"],
        vec!["warehouse", "sql", "--help"],
        vec!["warehouse", "serve", "--help"],
        vec!["warehouse", "attach", "--help"],
        vec!["warehouse", "tier", "--help"],
        vec!["warehouse", "tables", "--help"],
        vec!["stream", "--help"],
        vec!["rules", "--help"],
        vec!["rules", "set", "--help"],
        vec!["topics", "--help"],
        vec!["topics", "apply", "--help"],
        vec!["topics", "list", "--help"],
        vec!["topics", "delete", "--help"],
        vec!["events", "--help"],
        vec!["events", "schemas", "--help"],
        vec!["events", "arrow", "--help"],
        vec!["events", "sample", "--help"],
        vec!["config", "show", "--help"],
    ] {
        let out = shopstream(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let help = text(&out);
        assert!(help.contains("Usage:"), "{args:?}: {help}");
        assert!(
            help.lines().count() > 4,
            "{args:?} help is too thin: {help}"
        );
    }
}

#[test]
fn contract_commands_work_offline() {
    let out = shopstream(&["events", "schemas"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("25 schemas"));

    let out = shopstream(&["events", "list"], &[]);
    assert!(text(&out).contains("order.placed.v1"));

    let out = shopstream(&["events", "arrow", "order.placed.v1"], &[]);
    let arrow = text(&out);
    assert!(
        arrow.contains("event_time") && arrow.contains("Timestamp"),
        "{arrow}"
    );

    let out = shopstream(&["events", "sample", "order.teleported.v1"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown event type"), "{}", text(&out));

    let out = shopstream(&["topics", "list"], &[]);
    let list = text(&out);
    assert!(
        list.contains("orders.dlq") && list.contains("compact"),
        "{list}"
    );
}

#[test]
fn bad_configuration_is_refused_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("shopstream-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[kafka]\nbrokerz = \"x\"\n").unwrap();
    let out = shopstream(&["--config", file.to_str().unwrap(), "config", "show"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("brokerz"), "{}", text(&out));

    let out = shopstream(&["config", "show"], &[("SHOPSTREAM_KAFKA_LINGER_MS", "12")]);
    assert!(out.status.success());
    assert!(text(&out).contains("\"linger_ms\": 12"), "{}", text(&out));
    assert!(
        !text(&out).contains("shopstream:shopstream@"),
        "password shown"
    );
}

#[test]
fn topics_apply_is_idempotent_from_the_command_line() {
    let prefix = unique_prefix();
    let env = [
        ("SHOPSTREAM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SHOPSTREAM_KAFKA_BROKERS", &brokers()),
    ];
    let first = shopstream(&["topics", "apply"], &env);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains(&format!("{prefix}orders")));
    assert!(text(&first).contains("created"));
    let second = shopstream(&["topics", "apply"], &env);
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains(" 0 changed"), "{}", text(&second));
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    let out = shopstream(&["topics", "apply", "--brokers", "127.0.0.1:1"], &[]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("unreachable") && msg.contains("127.0.0.1:1"),
        "{msg}"
    );
}

fn http(port: u16, method: &str, path: &str, json: Option<&str>) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("server listens");
    let body = json.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn http_get(port: u16, path: &str) -> String {
    http(port, "GET", path, None)
}

/// Every record of `topic` from the beginning, printed by kcat in `format`.
fn kcat_consume(topic: &str, format: &str) -> String {
    let out = Command::new("kcat")
        .args([
            "-b",
            &brokers(),
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            format,
        ])
        .output()
        .expect("kcat installed by the stack");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn up_runs_live_traffic_and_kcat_sees_cloudevents() {
    let prefix = unique_prefix();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args(["up", "--rate", "50", "--duration", "12"])
        .env("SHOPSTREAM_KAFKA_TOPIC_PREFIX", &prefix)
        .env("SHOPSTREAM_WAREHOUSE_DIR", warehouse_dir(&prefix))
        // Its own registry: `up` trains and promotes a first fraud model, which must not
        // land in (or be read from) the user's models directory.
        .env(
            "SHOPSTREAM_SERVICES_MODELS_DIR",
            format!("{}-models", warehouse_dir(&prefix)),
        )
        .env(
            "SHOPSTREAM_WAREHOUSE_PG_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("SHOPSTREAM_KAFKA_BROKERS", brokers())
        .env("SHOPSTREAM_HTTP_ADDR", &addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The ops endpoints answer while it runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ops server never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(http_get(port, "/livez").starts_with("HTTP/1.1 200"));
    let ready = http_get(port, "/readyz");
    assert!(
        ready.starts_with("HTTP/1.1 200")
            && ready.contains("\"kafka\":\"ok\"")
            && ready.contains("\"postgres\":\"ok\""),
        "{ready}"
    );
    // A storefront call goes service -> outbox -> relay -> Kafka.
    let email = format!("{}@example.com", prefix.trim_end_matches('.'));
    let registered = http(
        port,
        "POST",
        "/v1/auth/register",
        Some(&format!(
            r#"{{"email":"{email}","password":"correct horse battery","display_name":"CLI","country":"DE"}}"#
        )),
    );
    assert!(registered.starts_with("HTTP/1.1 201"), "{registered}");
    let bad = http(port, "POST", "/v1/auth/register", Some("{\"email\":"));
    assert!(
        bad.starts_with("HTTP/1.1 400") && bad.contains("application/problem+json"),
        "{bad}"
    );
    std::thread::sleep(Duration::from_secs(4));
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("shopstream_kafka_produced_total"),
        "{metrics}"
    );

    let out = child.wait_with_output().unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let summary = log
        .lines()
        .find(|l| l.starts_with("shopstream stopped"))
        .expect(&log);
    let numbers: Vec<u64> = summary
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(numbers[0] >= 100, "{summary}");
    assert!(numbers[1] > 0, "{summary}");

    // What the issue's acceptance check runs: kcat sees every topic and ce_* headers.
    let list = Command::new("kcat")
        .args(["-b", &brokers(), "-L"])
        .output()
        .expect("kcat installed by the stack");
    let list = String::from_utf8_lossy(&list.stdout);
    for spec in events::CATALOGUE {
        assert!(
            list.contains(&format!("\"{prefix}{}\"", spec.name)),
            "{} missing",
            spec.name
        );
    }
    let headers = kcat_consume(&format!("{prefix}clickstream"), "%h\\n");
    assert!(headers.contains("ce_type=product.viewed.v1"), "{headers}");
    assert!(
        headers.contains("ce_specversion=1.0") && headers.contains("ce_id="),
        "{headers}"
    );
    let users = kcat_consume(&format!("{prefix}users"), "%h %s\\n");
    assert!(
        users
            .lines()
            .any(|l| l.contains("ce_type=user.registered.v1") && l.contains(&email)),
        "the registration reached Kafka through the outbox: {users}"
    );
}

/// A private database on the local PostgreSQL for one test; returns its URL.
async fn private_database() -> String {
    use sqlx::Connection;
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (set in .cargo/config.toml)");
    let name = format!("cli_{}", unique_prefix().replace(['-', '.'], "_"));
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    drop_orphaned_databases(&mut conn).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (root, _) = base.rsplit_once('/').unwrap();
    format!("{root}/{name}")
}

/// Drops the private databases of earlier runs that ended before dropping their own (a
/// failed assertion, a killed run): those named after a process that no longer exists.
/// Only where `/proc` tells which processes exist.
async fn drop_orphaned_databases(conn: &mut sqlx::PgConnection) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar(r"SELECT datname FROM pg_database WHERE datname LIKE 'cli\_cli\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    for name in names {
        let pid = name
            .strip_prefix("cli_cli_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            // Another test of this run may be dropping it at the same moment.
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_relay_process_loses_nothing() {
    use events::{Envelope, Event, samples};
    use ingest::outbox::{enqueue, pending_count};
    use sqlx::Connection;

    let prefix = unique_prefix();
    let db = private_database().await;
    let env = [
        ("SHOPSTREAM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SHOPSTREAM_KAFKA_BROKERS", &brokers()),
        ("SHOPSTREAM_DATABASE_URL", db.as_str()),
    ];
    for cmd in [["topics", "apply"], ["migrate", "--log-format=pretty"]] {
        let out = shopstream(&cmd, &env);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    }
    // 20,000 orders waiting in the outbox.
    let Event::OrderPlaced(order) = samples()[10].clone() else {
        unreachable!()
    };
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20_000u128 {
        let mut o = order.clone();
        o.customer_id = uuid::Uuid::from_u128(i % 97 + 1);
        let e = Envelope::new("/it", o);
        ids.push(e.id);
        enqueue(&mut tx, &e).await.unwrap();
    }
    tx.commit().await.unwrap();

    let spawn_relay = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shopstream"));
        c.arg("relay").stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().unwrap()
    };
    // Kill the first relay for real, mid-stream.
    let mut first = spawn_relay();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = pending_count(&mut conn).await.unwrap();
        if pending < 20_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let left = pending_count(&mut conn).await.unwrap();
    assert!(left > 0, "killed too late to test anything ({left} left)");

    let mut second = spawn_relay();
    let deadline = Instant::now() + Duration::from_secs(120);
    while pending_count(&mut conn).await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "the second relay did not drain the outbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();

    // Every event is in Kafka at least once; duplicates only as the same id.
    let mut cfg = ingest::KafkaConfig {
        brokers: brokers(),
        topic_prefix: prefix.clone(),
        ..ingest::KafkaConfig::default()
    };
    cfg.client_id = "relay-kill-test".into();
    let consumer = ingest::DurableConsumer::new(
        &cfg,
        ingest::ConsumerOptions::new(format!("{prefix}check"), vec![format!("{prefix}orders")]),
    )
    .unwrap();
    let mut sink = Collect::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.ids.len() < ids.len() && Instant::now() < deadline {
        consumer
            .poll_batch(&mut sink, Duration::from_secs(1))
            .await
            .unwrap();
    }
    let missing = ids.iter().filter(|id| !sink.ids.contains(id)).count();
    assert_eq!(missing, 0, "{missing} events lost after a SIGKILLed relay");
    assert_eq!(sink.ids.len(), ids.len());
    drop(conn);
    drop_database(&db).await;
}

async fn drop_database(url: &str) {
    use sqlx::Connection;
    let (_, name) = url.rsplit_once('/').unwrap();
    let base = std::env::var("DATABASE_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[derive(Default)]
struct Collect {
    ids: std::collections::HashSet<uuid::Uuid>,
}

impl ingest::Sink for Collect {
    async fn write(&mut self, batch: &[ingest::Record]) -> Result<(), ingest::SinkError> {
        self.ids.extend(batch.iter().map(|r| r.envelope.id));
        Ok(())
    }
}

/// Two `stream aggregate` processes share the partitions; one is SIGKILLed mid-stream and
/// restarted: the survivor takes over, and the final per-minute totals equal the ground truth
/// exactly (nothing lost, nothing counted twice).
#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_stream_processors_keep_totals_exact() {
    use events::Event;
    use ingest::simulate::{Generator, SimConfig};
    use std::collections::BTreeMap;

    let prefix = unique_prefix();
    let db = private_database().await;
    let env = [
        ("SHOPSTREAM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SHOPSTREAM_KAFKA_BROKERS", &brokers()),
        ("SHOPSTREAM_DATABASE_URL", db.as_str()),
    ];
    for cmd in [["topics", "apply"], ["migrate", "--log-format=pretty"]] {
        let out = shopstream(&cmd, &env);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    }
    let events: Vec<events::Envelope> = Generator::new(SimConfig {
        seed: 5,
        products: 300,
        customers: 5_000,
        sessions_per_sec: 1.0,
        ..SimConfig::default()
    })
    .take(150_000)
    .collect();
    let mut truth: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for e in &events {
        if let Event::OrderConfirmed(o) = &e.event {
            let t = e.time.timestamp_millis();
            let m = truth.entry(t - t.rem_euclid(60_000)).or_default();
            m.0 += 1;
            m.1 += o.total.amount_minor;
        }
    }
    let cfg = ingest::KafkaConfig {
        brokers: brokers(),
        topic_prefix: prefix.clone(),
        ..ingest::KafkaConfig::default()
    };
    // Two thirds go in before the processors start, the rest only after the kill: however
    // fast the processors are, A dies with work still to do.
    let producer = ingest::EventProducer::new(&cfg).unwrap();
    let (before, after) = events.split_at(100_000);
    for chunk in before.chunks(10_000) {
        producer.publish_all(chunk).await.unwrap();
    }

    // Each processor's output goes to its own log, shown if the totals come out wrong.
    let logs = std::env::temp_dir().join(format!("{prefix}logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let started = std::cell::Cell::new(0);
    let spawn = || {
        started.set(started.get() + 1);
        let log =
            std::fs::File::create(logs.join(format!("processor-{}.log", started.get()))).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_shopstream"));
        c.args(["stream", "aggregate"])
            // The engine's seeks, fences and late records are in the log, not sqlx's
            // slow-statement warnings (a loaded machine has many).
            .env("RUST_LOG", "info,sqlx::query=error,streams::engine=debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().unwrap()
    };
    let tails = || {
        let mut out = String::new();
        for i in 1..=started.get() {
            let text = std::fs::read_to_string(logs.join(format!("processor-{i}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!(
                "--- processor {i} ({} lines, the last ones)\n{}\n",
                lines.len(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        out
    };
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let totals = || async {
        let rows: Vec<(chrono::DateTime<chrono::Utc>, i64, i64)> = sqlx::query_as(
            "SELECT window_start, count, sum FROM streams.metrics WHERE metric = 'orders' AND dims = 'EUR'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(t, c, s)| (t.timestamp_millis(), (c, s)))
            .collect::<BTreeMap<i64, (i64, i64)>>()
    };
    let orders = |m: &BTreeMap<i64, (i64, i64)>| m.values().map(|v| v.0).sum::<i64>();
    let want = orders(&truth);

    let mut a = spawn();
    let b = spawn();
    // Kill A once some, but not all, of the work is checkpointed.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = orders(&totals().await);
        if done > 0 {
            assert!(done < want, "finished before the kill; nothing tested");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the processors never checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    for chunk in after.chunks(10_000) {
        producer.publish_all(chunk).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a2 = spawn();
    // Wait while the processors make progress (a checkpoint saved somewhere): a loaded CI
    // machine is slow, but a lost partition stops the checkpoints well before the totals
    // are right.
    let progress = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(sum(version), 0)::bigint FROM streams.checkpoints",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let started_at = Instant::now();
    let (mut seen, mut moved) = (progress().await, Instant::now());
    let mut last = BTreeMap::new();
    while moved.elapsed() < Duration::from_secs(60)
        && started_at.elapsed() < Duration::from_secs(600)
    {
        last = totals().await;
        if last == truth {
            break;
        }
        let now = progress().await;
        if now != seen {
            (seen, moved) = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let waited = format!(
        "after {:.0} s ({:.0} s since the last checkpoint); minutes short or over: {:?}",
        started_at.elapsed().as_secs_f64(),
        moved.elapsed().as_secs_f64(),
        truth
            .iter()
            .filter(|(m, v)| last.get(m) != Some(v))
            .map(|(m, v)| (*m, v.0, last.get(m).map_or(0, |l| l.0)))
            .take(20)
            .collect::<Vec<_>>()
    );
    for mut p in [b, a2] {
        p.kill().unwrap();
        p.wait().unwrap();
    }
    assert_eq!(
        orders(&last),
        want,
        "orders counted after a SIGKILL, {waited}\n{}",
        tails()
    );
    assert_eq!(
        last,
        truth,
        "per-minute totals after a SIGKILL and restart, {waited}\n{}",
        tails()
    );
    pool.close().await;
    drop_database(&db).await;
    let _ = std::fs::remove_dir_all(&logs);
}

fn summary_number(log: &str, line_has: &str, before: &str) -> i64 {
    let line = log
        .lines()
        .find(|l| l.contains(line_has))
        .unwrap_or_else(|| panic!("no line with {line_has:?} in {log}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == before)
        .unwrap_or_else(|| panic!("no {before:?} in {line:?}"));
    // Digits only: "(40" is 40, and money "218.54" is 21854 minor units.
    words[i - 1]
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number before {before:?} in {line:?}"))
}

fn label_kinds(path: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["kind"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// `simulate` over HTTP against a running `up`: the shop is set up through the APIs, every
/// order the simulator reports is in the orders service and reached Kafka through the outbox,
/// browser events went through the intake, each fraud label names the server's orders of
/// its accounts, and the same seed makes the same sessions.
#[tokio::test(flavor = "multi_thread")]
async fn simulated_shoppers_over_http_leave_labelled_orders_in_the_services_and_kafka() {
    let prefix = unique_prefix();
    let db = private_database().await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let lake = warehouse_dir(&prefix);
    let pg_addr = format!("127.0.0.1:{}", free_port());
    let models = format!("{lake}-models");
    let builtin_model = workspace_root()
        .join("streams/models/fraud-lr-v0.json")
        .to_string_lossy()
        .into_owned();
    let env = [
        ("SHOPSTREAM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SHOPSTREAM_KAFKA_BROKERS", &brokers()),
        ("SHOPSTREAM_DATABASE_URL", db.as_str()),
        ("SHOPSTREAM_HTTP_ADDR", addr.as_str()),
        ("SHOPSTREAM_WAREHOUSE_DIR", lake.as_str()),
        ("SHOPSTREAM_WAREHOUSE_PG_ADDR", pg_addr.as_str()),
        ("SHOPSTREAM_SERVICES_MODELS_DIR", models.as_str()),
        // The built-in weights, pinned: the model `up` trains would start blocking the
        // scripted card tester part-way (depending on when it is promoted), and the checks
        // below count that session's declines.
        ("SHOPSTREAM_STREAMS_FRAUD_MODEL", builtin_model.as_str()),
        // The test builds the models itself, after the loader.
        ("SHOPSTREAM_WAREHOUSE_BUILD_INTERVAL_SECS", "0"),
    ];
    let mut up = Command::new(env!("CARGO_BIN_EXE_shopstream"));
    up.args(["up", "--rate", "0", "--duration", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        up.env(k, v);
    }
    let up = up.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "up never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = std::env::temp_dir().join(prefix.trim_end_matches('.'));
    std::fs::create_dir_all(&dir).unwrap();
    let simulate = |labels: &std::path::Path| {
        let labels = labels.to_str().unwrap().to_owned();
        let out = shopstream(
            &[
                "simulate",
                "--url",
                &format!("http://{addr}"),
                "--seed",
                "11",
                "--sessions",
                "60",
                "--concurrency",
                "1",
                "--rps",
                "2000",
                "--products",
                "40",
                "--customers",
                "80",
                "--fraud-rate",
                "0.25",
                "--labels",
                &labels,
            ],
            &env,
        );
        let log = text(&out);
        assert!(out.status.success(), "{log}");
        log
    };
    let first = dir.join("first.jsonl");
    let log = simulate(&first);
    assert_eq!(summary_number(&log, "sessions,", "sessions,"), 60, "{log}");
    assert_eq!(
        summary_number(&log, "products created", "products"),
        40,
        "{log}"
    );
    let confirmed = summary_number(&log, "confirmed orders", "confirmed");
    let revenue = summary_number(&log, "confirmed orders", "EUR");
    assert!(confirmed > 0, "{log}");

    // Every order the simulator saw confirmed is in the orders service, with its revenue.
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let (db_confirmed, db_revenue): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), sum(total_minor)::bigint FROM orders.orders WHERE status = 'confirmed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (db_confirmed, db_revenue.unwrap_or(0)),
        (confirmed, revenue)
    );

    // The shop was set up through the APIs: five vendors own the products, some of which are
    // variants of another; new shoppers filed an address.
    let (vendors, variants, addresses): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(DISTINCT vendor_id) FROM catalog.products),
                (SELECT count(*) FROM catalog.products WHERE variant_of IS NOT NULL),
                (SELECT count(*) FROM users.addresses)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(vendors, 5);
    assert!(
        variants > 0 && addresses > 0,
        "{variants} variants, {addresses} addresses"
    );

    // Fraud labels name real orders of the labelled accounts.
    let labels = label_kinds(&first);
    assert!(labels.len() >= 5, "{labels:?}");
    for (kind, l) in &labels {
        let customers: Vec<uuid::Uuid> = serde_json::from_value(l["customer_ids"].clone()).unwrap();
        let orders: Vec<uuid::Uuid> = serde_json::from_value(l["order_ids"].clone()).unwrap();
        let rows: Vec<(uuid::Uuid, String, Option<String>)> = sqlx::query_as(
            "SELECT customer_id, status, cancel_reason FROM orders.orders WHERE id = ANY($1)",
        )
        .bind(&orders)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), orders.len(), "{kind}: {l}");
        assert!(rows.iter().all(|r| customers.contains(&r.0)), "{kind}: {l}");
        if kind == "card_testing" {
            let declined = rows
                .iter()
                .filter(|r| r.2.as_deref() == Some("payment_declined"))
                .count();
            assert!(declined >= 5, "card testing declines first: {rows:?}");
        }
    }

    // SQL over HTTP: admins reach bronze, analysts the gold models (JSON, CSV, Arrow IPC),
    // customers nothing; writes and bad SQL are clear problems.
    let out = shopstream(&["warehouse", "build"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let base = format!("http://{addr}/v1");
    let client = reqwest::Client::new();
    let token = |email: String, role: Option<&'static str>| {
        let (client, base, env) = (client.clone(), base.clone(), env);
        async move {
            let body = serde_json::json!({"email": email, "password": "correct horse battery",
                "display_name": "SQL", "country": "DE"});
            let r = client
                .post(format!("{base}/auth/register"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
            if let Some(role) = role {
                let out = shopstream(&["grant", &email, role], &env);
                assert!(out.status.success(), "{}", text(&out));
            }
            let body = serde_json::json!({"email": email, "password": "correct horse battery"});
            let r: serde_json::Value = client
                .post(format!("{base}/auth/login"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["access_token"].as_str().unwrap().to_owned()
        }
    };
    let tag = prefix.trim_end_matches('.');
    let analyst = token(format!("analyst-{tag}@example.com"), Some("analyst")).await;
    let admin = token(format!("admin-{tag}@example.com"), Some("admin")).await;
    let customer = token(format!("customer-{tag}@example.com"), None).await;
    let sql = |tok: &str, body: serde_json::Value| {
        client
            .post(format!("{base}/sql"))
            .bearer_auth(tok)
            .json(&body)
            .send()
    };
    let r = sql(
        &analyst,
        serde_json::json!({"sql": "SELECT sum(orders) AS n FROM daily_revenue"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["rows"][0]["n"].as_i64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["columns"][0]["name"], "n");
    let r = sql(
        &analyst,
        serde_json::json!({"sql": "SELECT 1 AS a, 'x' AS b", "format": "csv"}),
    )
    .await
    .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(r.text().await.unwrap(), "a,b\n1,x\n");
    let r = sql(
        &analyst,
        serde_json::json!({"sql": "SELECT 1 AS a", "format": "arrow"}),
    )
    .await
    .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    assert!(
        r.bytes()
            .await
            .unwrap()
            .starts_with(&[0xff, 0xff, 0xff, 0xff]),
        "an Arrow IPC stream"
    );
    for (tok, body, status) in [
        (
            &analyst,
            serde_json::json!({"sql": "SELECT count(*) FROM bronze.orders"}),
            400,
        ),
        (
            &admin,
            serde_json::json!({"sql": "SELECT count(*) AS n FROM bronze.orders"}),
            200,
        ),
        (&customer, serde_json::json!({"sql": "SELECT 1"}), 403),
        (
            &analyst,
            serde_json::json!({"sql": "DROP TABLE daily_revenue"}),
            403,
        ),
        (&analyst, serde_json::json!({"sql": "SELEC 1"}), 400),
        (
            &analyst,
            serde_json::json!({"sql": "SELECT 1", "limit": 3}),
            422,
        ),
        (&analyst, serde_json::json!({"sql": ""}), 400),
    ] {
        let r = sql(tok, body.clone()).await.unwrap();
        let got = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{body}: {text}");
        if status != 200 {
            assert!(text.contains("\"detail\""), "problem+json: {text}");
        }
    }
    let r = client
        .post(format!("{base}/sql"))
        .json(&serde_json::json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Models trained from the warehouse and served by the running platform: a simulated
    // shopper's recommendations, similar products, and search over the simulator's catalogue.
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
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let shopper = warehouse_sql_admin(
        &env,
        "SELECT CAST(customer_id AS VARCHAR) AS c FROM gold.fact_orders ORDER BY placed_at LIMIT 1",
    );
    let shopper = shopper[0]["c"].as_str().unwrap().to_owned();
    let bought = warehouse_sql_admin(
        &env,
        "SELECT CAST(product_id AS VARCHAR) AS p FROM gold.fact_order_items ORDER BY placed_at LIMIT 1",
    );
    let bought = bought[0]["p"].as_str().unwrap().to_owned();
    let get = |path: String, tok: Option<String>| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let mut r = client.get(format!("{base}{path}"));
            if let Some(t) = tok {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    // `up` follows the registry: the promoted model is served within its reload interval.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recs = loop {
        let (status, v) = get(
            format!("/recommendations/users/{shopper}?limit=5"),
            Some(admin.clone()),
        )
        .await;
        if status == 200 {
            break v;
        }
        assert!(status == 503 && Instant::now() < deadline, "{status}: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(recs["strategy"], "personalized", "{recs}");
    assert_eq!(recs["model_version"], "v1");
    assert_eq!(recs["items"].as_array().unwrap().len(), 5, "{recs}");
    let (status, similar) = get(format!("/products/{bought}/similar?limit=3"), None).await;
    assert_eq!(status, 200, "{similar}");
    assert_eq!(similar["items"].as_array().unwrap().len(), 3, "{similar}");
    let (status, found) = get("/search?q=striped%20shoes".into(), None).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["mode"], "blended", "{found}");
    assert!(!found["items"].as_array().unwrap().is_empty(), "{found}");
    // Visual search over the pictures the simulator uploaded with its products: a product's
    // own picture finds that product first.
    let (status, listed) = get("/products?limit=1".into(), None).await;
    assert_eq!(status, 200, "{listed}");
    let product = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let picture_url = listed["items"][0]["images"][0]
        .as_str()
        .expect("a picture")
        .to_owned();
    let picture = client
        .get(format!("{}{picture_url}", base.trim_end_matches("/v1")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut form = b"--b0undary\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
    form.extend_from_slice(&picture);
    form.extend_from_slice(b"\r\n--b0undary--\r\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    let by_image = loop {
        let r = client
            .post(format!("{base}/search/image?limit=3"))
            .header("content-type", "multipart/form-data; boundary=b0undary")
            .body(form.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v = r.json::<serde_json::Value>().await.unwrap_or_default();
        if status == 200 {
            break v;
        }
        assert!(status == 503 && Instant::now() < deadline, "{status}: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        by_image["items"][0]["product_id"],
        product.as_str(),
        "{by_image}"
    );
    // `up` trained a first fraud model on simulated traffic and promoted it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = shopstream(&["ml", "list", "fraud", "--json"], &env);
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if listed[0]["promoted"] == true {
            assert!(
                listed[0]["metadata"]["metrics"]["auprc"].as_f64().unwrap() > 0.5,
                "{listed}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no fraud model promoted: {}",
            text(&out)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The same seed makes the same sessions (the server's ids differ).
    let second = dir.join("second.jsonl");
    let log2 = simulate(&second);
    assert_eq!(
        summary_number(&log2, "sessions,", "sessions,"),
        60,
        "{log2}"
    );
    assert_eq!(
        summary_number(&log2, "products created", "products"),
        0,
        "{log2}"
    );
    let kinds =
        |v: &[(String, serde_json::Value)]| v.iter().map(|k| k.0.clone()).collect::<Vec<_>>();
    assert_eq!(kinds(&label_kinds(&second)), kinds(&labels));

    let kill = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = up.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&models);

    // The outbox relay published each confirmation once per event id; the intake took views.
    let consume = |topic: &str| kcat_consume(&format!("{prefix}{topic}"), "%h\\n");
    let orders = consume("orders");
    let confirmed_ids: std::collections::HashSet<&str> = orders
        .lines()
        .filter(|l| l.contains("ce_type=order.confirmed.v1"))
        .filter_map(|l| l.split(',').find_map(|h| h.strip_prefix("ce_id=")))
        .collect();
    let (all_confirmed,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM orders.orders WHERE status = 'confirmed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(confirmed_ids.len() as i64, all_confirmed);
    assert!(consume("clickstream").contains("ce_type=product.viewed.v1"));

    // Reconciliation: the warehouse, loaded from Kafka, has PostgreSQL's orders and revenue
    // per day. (`up` ran the loader; this run picks up wherever it stopped.)
    let out = shopstream(&["warehouse", "load", "--until-idle", "3"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let out = shopstream(&["warehouse", "build"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let pg: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*), sum(total_minor)::bigint
         FROM orders.orders WHERE status = 'confirmed' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let lakehouse = warehouse_sql(
        &env,
        "SELECT CAST(order_date AS VARCHAR) AS day, sum(orders) AS orders, sum(revenue_minor) AS revenue \
         FROM daily_revenue GROUP BY order_date ORDER BY order_date",
    );
    let lakehouse: Vec<(String, i64, i64)> = lakehouse
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap().to_owned(),
                r["orders"].as_i64().unwrap(),
                r["revenue"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(!pg.is_empty());
    assert_eq!(
        lakehouse, pg,
        "orders and revenue per day: warehouse vs PostgreSQL"
    );
    pool.close().await;
    drop_database(&db).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&lake);
}

/// Runs `warehouse sql --format json` and returns its rows.
fn warehouse_sql(env: &[(&str, &str)], sql: &str) -> Vec<serde_json::Value> {
    let out = shopstream(&["warehouse", "sql", "--format", "json", sql], env);
    assert!(out.status.success(), "{sql}: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{sql}: {e}: {}", text(&out)));
    v["rows"].as_array().cloned().unwrap_or_default()
}

/// Runs `warehouse sql --admin --format json` (every layer) and returns its rows.
fn warehouse_sql_admin(env: &[(&str, &str)], sql: &str) -> Vec<serde_json::Value> {
    let out = shopstream(
        &["warehouse", "sql", "--admin", "--format", "json", sql],
        env,
    );
    assert!(out.status.success(), "{sql}: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{sql}: {e}: {}", text(&out)));
    v["rows"].as_array().cloned().unwrap_or_default()
}

mod warehouse;

/// Ctrl-C stops `bench checkout` mid-load, and its private database goes with it.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_checkout_bench_removes_its_database() {
    use sqlx::Connection;
    let base = std::env::var("DATABASE_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    let benches = async |conn: &mut sqlx::PgConnection| -> Vec<String> {
        sqlx::query_scalar(r"SELECT datname FROM pg_database WHERE datname LIKE 'bench\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
    };
    let before = benches(&mut conn).await;
    let mut bench = Command::new(env!("CARGO_BIN_EXE_shopstream"));
    bench
        .args(["bench", "checkout", "--duration", "120", "--warmup", "0"])
        .args(["--buyers", "32", "--products", "10", "--get-duration", "1"])
        .env("SHOPSTREAM_DATABASE_URL", &base)
        .env("SHOPSTREAM_KAFKA_BROKERS", brokers())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = bench.spawn().unwrap();
    // Interrupted once its database exists and the load has run a moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mine = loop {
        if let Some(new) = benches(&mut conn)
            .await
            .into_iter()
            .find(|d| !before.contains(d))
        {
            break new;
        }
        assert!(Instant::now() < deadline, "the bench made no database");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the bench ended by itself"
    );
    // SAFETY: a plain kill(2) of the child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("interrupted: removing the benchmark's database"),
        "{stderr}"
    );
    assert!(
        !benches(&mut conn).await.contains(&mine),
        "{mine} is still there:\n{stderr}"
    );
}
