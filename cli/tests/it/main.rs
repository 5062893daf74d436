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
        vec!["topics", "--help"],
        vec!["topics", "apply", "--help"],
        vec!["topics", "list", "--help"],
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

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("ops server listens");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn up_runs_the_smoke_flow_and_kcat_sees_cloudevents() {
    let prefix = unique_prefix();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args(["up", "--rate", "50", "--duration", "12"])
        .env("SHOPSTREAM_KAFKA_TOPIC_PREFIX", &prefix)
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
        ready.starts_with("HTTP/1.1 200") && ready.contains("\"kafka\":\"ok\""),
        "{ready}"
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

    // What the acceptance check runs: kcat sees every topic and ce_* headers.
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
    let consumed = Command::new("kcat")
        .args([
            "-b",
            &brokers(),
            "-C",
            "-t",
            &format!("{prefix}orders"),
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%h\\n",
        ])
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&consumed.stdout);
    assert!(headers.contains("ce_type=order.placed.v1"), "{headers}");
    assert!(
        headers.contains("ce_specversion=1.0") && headers.contains("ce_id="),
        "{headers}"
    );
}
