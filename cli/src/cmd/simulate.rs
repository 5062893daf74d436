//! `shopstream simulate`: traffic with ground truth. `--direct` sends events straight into
//! Kafka, `--images` renders product pictures; the HTTP mode through the storefront APIs is
//! not written yet.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ingest::TopicAdmin;
use ingest::simulate::{SimConfig, run_direct};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Generate events straight into Kafka at full speed, bypassing HTTP (required for now:
    /// the HTTP mode is not implemented yet).
    #[arg(long)]
    direct: bool,
    /// How many events to produce.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Same seed, same traffic (ids included).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Products in the generated catalog.
    #[arg(long, default_value_t = 2_000)]
    products: usize,
    /// Customers in the generated world.
    #[arg(long, default_value_t = 20_000)]
    customers: usize,
    /// Chance that a session is an injected fraud case.
    #[arg(long, default_value_t = 0.01)]
    fraud_rate: f64,
    /// Simulated minutes between injected anomalies (traffic spike, gateway outage, pricing
    /// glitch, stalled category, in turn); 0 turns them off.
    #[arg(long, default_value_t = 180)]
    anomaly_every_min: u64,
    /// Simulated minutes an anomaly lasts.
    #[arg(long, default_value_t = 10)]
    anomaly_min: u64,
    /// Also render a PNG picture of every product into this directory (for image search).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Where to write the ground-truth label log (JSON Lines).
    #[arg(long, default_value = "labels.jsonl")]
    labels: PathBuf,
}

pub async fn run(cfg: &Config, args: SimulateArgs) -> anyhow::Result<ExitCode> {
    if !args.direct && args.images.is_none() {
        anyhow::bail!(
            "say what to simulate: --direct (events into Kafka) and/or --images DIR; \
             the HTTP mode is not written yet"
        );
    }
    if !(0.0..=1.0).contains(&args.fraud_rate) {
        anyhow::bail!("--fraud-rate must be between 0 and 1");
    }
    let sim = SimConfig {
        seed: args.seed,
        products: args.products.max(1),
        customers: args.customers.max(1),
        fraud_rate: args.fraud_rate,
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
    if !args.direct {
        return Ok(ExitCode::SUCCESS);
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
