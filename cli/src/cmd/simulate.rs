//! `shopstream simulate`: traffic with ground truth. By default shoppers call the storefront
//! APIs over HTTP (`ingest::simulate::run_http`); `--direct` sends events straight into
//! Kafka at full speed; `--images` renders product pictures.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ingest::TopicAdmin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use events::domain::users::Role;
use ingest::simulate::{GroundTruth, HttpProgress, HttpSimConfig, SimConfig, run_direct, run_http};

use crate::cmd::platform;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Generate events straight into Kafka at full speed, bypassing HTTP. Without it,
    /// simulated shoppers call the storefront APIs (start them first: `shopstream up` or
    /// `shopstream serve`).
    #[arg(long)]
    direct: bool,
    /// Only render the product pictures (with --images), no traffic.
    #[arg(long, requires = "images", conflicts_with = "direct")]
    images_only: bool,
    /// Direct mode: how many events to produce.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Same seed, same traffic (in direct mode ids included; over HTTP the server assigns them).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Products in the generated catalog [default: 2000 direct, 200 over HTTP, where the
    /// simulator creates them through the catalog API].
    #[arg(long)]
    products: Option<usize>,
    /// Customers in the generated world [default: 20000 direct, 2000 over HTTP].
    #[arg(long)]
    customers: Option<usize>,
    /// Chance that a session is an injected fraud case [default: 0.01 direct, 0.02 over HTTP].
    #[arg(long)]
    fraud_rate: Option<f64>,
    /// Direct mode: simulated minutes between injected anomalies (traffic spike, gateway
    /// outage, pricing glitch, stalled category, in turn); 0 turns them off.
    #[arg(long, default_value_t = 180)]
    anomaly_every_min: u64,
    /// Direct mode: simulated minutes an anomaly lasts.
    #[arg(long, default_value_t = 10)]
    anomaly_min: u64,
    /// Also render a PNG picture of every product into this directory (for image search).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Where to write the ground-truth label log (JSON Lines).
    #[arg(long, default_value = "labels.jsonl")]
    labels: PathBuf,
    /// HTTP mode: the storefront's base URL [default: http://<http.addr>].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// HTTP mode: requests per second at the daily peak.
    #[arg(long, default_value_t = 50.0)]
    rps: f64,
    /// HTTP mode: how long to run, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    duration: u64,
    /// HTTP mode: stop after this many sessions, even before --duration.
    #[arg(long)]
    sessions: Option<u64>,
    /// HTTP mode: shopper sessions in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP mode: seconds a simulated day lasts; the request rate follows a daily curve over
    /// it, starting at the evening peak (86400 = real time).
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    day_secs: u64,
    /// HTTP mode: seconds between injected anomalies (0 = none), each lasting --anomaly-secs.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    anomaly_every_secs: u64,
    /// HTTP mode: seconds an injected anomaly lasts.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    anomaly_secs: u64,
}

pub async fn run(cfg: &Config, args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let http = !args.direct && !args.images_only;
    let fraud_rate = args.fraud_rate.unwrap_or(if http { 0.02 } else { 0.01 });
    if !(0.0..=1.0).contains(&fraud_rate) {
        anyhow::bail!("--fraud-rate must be between 0 and 1");
    }
    let sim = SimConfig {
        seed: args.seed,
        products: args
            .products
            .unwrap_or(if http { 200 } else { 2_000 })
            .max(1),
        customers: args
            .customers
            .unwrap_or(if http { 2_000 } else { 20_000 })
            .max(1),
        fraud_rate,
        anomaly_every_secs: args.anomaly_every_min * 60,
        anomaly_secs: args.anomaly_min * 60,
        ..SimConfig::default()
    };
    if let Some(dir) = &args.images {
        let products = ingest::simulate::Generator::new(sim.clone())
            .world()
            .products
            .clone();
        let (dir, seed, n) = (dir.clone(), sim.seed, products.len());
        let written = tokio::task::spawn_blocking(move || {
            let bar = progress_bar(n as u64, "pictures");
            let r = ingest::simulate::images::write_all(&products, seed, &dir, |i| {
                if let Some(b) = &bar {
                    b.set_position(i as u64);
                }
            });
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            r.map(|w| (w.len(), dir))
        })
        .await
        .context("image task")?
        .context("writing product pictures")?;
        println!("{} product pictures in {}", written.0, written.1.display());
    }
    if args.images_only {
        return Ok(ExitCode::SUCCESS);
    }
    if http {
        return run_over_http(cfg, &args, sim).await;
    }
    TopicAdmin::new(&cfg.kafka)?
        .apply(&cfg.kafka.topic_names().plan())
        .await?;
    let kafka = cfg.kafka.clone();
    let total = args.events;
    let labels = args.labels.clone();
    let report = tokio::task::spawn_blocking(move || {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} events {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let r = run_direct(&kafka, sim, total, Some(&labels), |n| match &bar {
            Some(b) => b.set_position(n),
            None if n % 200_000 == 0 => tracing::info!(events = n, of = total, "simulating"),
            None => {}
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        r
    })
    .await
    .context("simulator task")??;
    println!(
        "{} events in {:.1} s = {:.0} events/s, {} failed, {} fraud cases and anomalies labelled in {}",
        report.events,
        report.elapsed.as_secs_f64(),
        report.per_sec(),
        report.failed,
        report.labels,
        args.labels.display()
    );
    let revenue: Vec<String> = report
        .revenue_minor
        .iter()
        .map(|(c, m)| format!("{}.{:02} {c}", m / 100, m % 100))
        .collect();
    println!(
        "{} sessions, {} confirmed orders, revenue {}, {} fraud cases, {} anomalies",
        report.sessions,
        report.orders,
        if revenue.is_empty() {
            "0".into()
        } else {
            revenue.join(" + ")
        },
        report.fraud_cases,
        report.anomalies
    );
    for (t, n) in &report.by_type {
        println!("  {t:<26} {n}");
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// HTTP mode: shoppers through the storefront APIs, with a live status line.
async fn run_over_http(
    cfg: &Config,
    args: &SimulateArgs,
    sim: SimConfig,
) -> anyhow::Result<ExitCode> {
    if !args.rps.is_finite() || args.rps <= 0.0 {
        anyhow::bail!("--rps must be above 0");
    }
    let base_url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.http.addr))
        .trim_end_matches('/')
        .to_owned();
    let pool = platform::connect_db(cfg).await?;
    let grant = async |email: &str, roles: &[&str]| -> Result<(), String> {
        let roles: Vec<Role> = roles
            .iter()
            .map(|r| serde_json::from_value(serde_json::Value::String((*r).into())))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        match services::auth::grant_roles(&pool, email, &roles).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(format!("no account {email}")),
            Err(e) => Err(e.to_string()),
        }
    };
    let hcfg = HttpSimConfig {
        base_url: base_url.clone(),
        seed: sim.seed,
        rps: args.rps,
        duration: Duration::from_secs(args.duration),
        max_sessions: args.sessions,
        products: sim.products,
        customers: sim.customers,
        fraud_rate: sim.fraud_rate,
        concurrency: args.concurrency.max(1),
        day_secs: args.day_secs.max(1),
        anomaly_every_secs: args.anomaly_every_secs,
        anomaly_secs: args.anomaly_secs.max(1),
    };
    let progress = Arc::new(HttpProgress::default());
    let setup_bar = progress_bar(sim.products as u64, "products set up");
    let status = {
        let (p, total) = (progress.clone(), args.duration);
        let bar = std::io::stderr()
            .is_terminal()
            .then(indicatif::ProgressBar::new_spinner);
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(if bar.is_some() { 1 } else { 10 })).await;
                let (s, r, o) = (
                    p.sessions.load(Ordering::Relaxed),
                    p.requests.load(Ordering::Relaxed),
                    p.orders.load(Ordering::Relaxed),
                );
                let line = format!(
                    "{s} sessions, {r} requests, {o} orders ({}/{total} s)",
                    start.elapsed().as_secs()
                );
                match &bar {
                    Some(b) => b.set_message(line),
                    None => tracing::info!("{line}"),
                }
            }
        })
    };
    let report = run_http(hcfg, grant, progress, |done, of| {
        if let Some(b) = &setup_bar {
            b.set_position(done as u64);
            if done == of {
                b.finish_and_clear();
            }
        }
    })
    .await;
    status.abort();
    let report = report.with_context(|| format!("simulating shoppers against {base_url}"))?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.labels)
            .with_context(|| format!("creating {}", args.labels.display()))?,
    );
    for l in &report.labels {
        serde_json::to_writer(&mut out, l)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    }
    std::io::Write::flush(&mut out)?;
    let fraud = report
        .labels
        .iter()
        .filter(|l| matches!(l, GroundTruth::Fraud(_)))
        .count();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{} sessions, {} requests in {:.1} s = {:.0} requests/s ({} products created), {} without an answer",
        report.sessions,
        report.requests,
        secs,
        report.requests as f64 / secs,
        report.products_created,
        report.transport_errors
    );
    println!(
        "{} confirmed orders, {} cancelled, {} refused by the blocklist, revenue {}.{:02} EUR",
        report.orders_confirmed,
        report.orders_cancelled,
        report.checkouts_blocked,
        report.revenue_minor / 100,
        report.revenue_minor % 100
    );
    println!(
        "{fraud} fraud cases and {} anomalies labelled in {}",
        report.labels.len() - fraud,
        args.labels.display()
    );
    let statuses: Vec<String> = report
        .by_status
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!("  responses {}", statuses.join(", "));
    let server_errors: u64 = report.by_status.range(500..).map(|(_, n)| n).sum();
    Ok(if server_errors == 0 && report.transport_errors == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: {server_errors} server errors and {} failed requests",
            report.transport_errors
        );
        ExitCode::FAILURE
    })
}

/// A progress bar on a terminal; nothing (plain log lines instead) otherwise.
fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(len);
        let template = format!("{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} eta {{eta}}");
        b.set_style(
            indicatif::ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}
