//! `shopstream stream <name>`: run a stream processor (several instances share the work:
//! aggregate shares partitions, fraud and anomaly have one leader and standbys).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use ingest::EventProducer;
use sqlx::PgPool;
use streams::aggregate::Aggregator;
use streams::anomaly::{AnomalyConfig, AnomalyDetector};
use streams::fraud::{FraudDetector, Model, Rule, RulesFeed, Thresholds};
use streams::table::{Customers, Products};
use streams::{EngineConfig, engine};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cmd::lifecycle::{stopped, wait_for_signal};
use crate::cmd::platform;
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Windowed metrics: revenue, orders, top products, funnel, sessions, payment failures.
    Aggregate,
    /// Fraud scoring: rules + model, alerts to the review queue, blocklist.
    Fraud,
    /// Anomaly detection on per-minute series.
    Anomaly,
    /// All three in this process.
    All,
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Which processor to run.
    #[arg(value_enum)]
    pub which: Which,
    /// Exit once caught up and idle for this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub until_idle: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List the rules in force (latest version of each).
    List,
    /// Save a new version of a rule and publish the rule set (processors reload it live).
    Set {
        /// Rule id (new or existing).
        id: String,
        /// Logic: velocity, declines_then_order, new_account_high_value,
        /// new_device_ship_elsewhere, country_mismatch, shared_entity, amount_zscore.
        #[arg(long)]
        kind: Option<String>,
        /// Parameters as JSON, e.g. '{"by":"card","window_min":30,"min_declines":3}'.
        #[arg(long)]
        params: Option<String>,
        /// Weight 0..1 in the combined score.
        #[arg(long)]
        weight: Option<f64>,
        /// Turn the rule off (or back on with --enable).
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
    /// Publish the current rules to the rules topic (done at processor start too).
    Publish,
}

pub fn engine_config(cfg: &Config) -> EngineConfig {
    let mut e = EngineConfig::new(cfg.kafka.clone());
    e.watermark_bound = Duration::from_secs(cfg.streams.watermark_secs);
    e
}

/// Starts the chosen processors as tasks that stop when `stop` is raised.
pub async fn spawn(
    cfg: &Config,
    pool: &PgPool,
    which: Which,
    until_idle: Option<u64>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<String>>>> {
    let mut ecfg = engine_config(cfg);
    ecfg.stop_when_idle = until_idle.map(Duration::from_secs);
    let lateness = cfg.streams.allowed_lateness_secs as i64 * 1000;
    let mut tasks = Vec::new();
    if matches!(which, Which::Aggregate | Which::All) {
        let p = Aggregator::new(
            Some(Products::load(&cfg.kafka).context("reading the catalog topic")?),
            lateness,
        )
        .with_customers(Customers::load(&cfg.kafka).context("reading the users topic")?);
        let (pool, ecfg, stop) = (pool.clone(), ecfg.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let r = engine::run(p, pool, ecfg, stopped(stop))
                .await
                .context("aggregate processor")?;
            Ok(format!("aggregate: {r:?}"))
        }));
    }
    if matches!(which, Which::Fraud | Which::All) {
        let producer = EventProducer::new(&cfg.kafka)?;
        streams::fraud::publish_rules(pool, &producer)
            .await
            .map_err(anyhow::Error::msg)
            .context("publishing fraud rules")?;
        let rules = streams::fraud::load_rules(pool).await?;
        let model = if cfg.streams.fraud_model.is_empty() {
            Model::builtin()
        } else {
            Model::from_file(std::path::Path::new(&cfg.streams.fraud_model))
                .map_err(anyhow::Error::msg)?
        };
        let thresholds = Thresholds {
            review: cfg.streams.review_threshold,
            block: cfg.streams.block_threshold,
        };
        anyhow::ensure!(
            thresholds.review <= thresholds.block && thresholds.block <= 99,
            "streams.review_threshold must be <= streams.block_threshold <= 99"
        );
        let mut p = FraudDetector::new(rules, model, thresholds)
            .with_rules_feed(RulesFeed::open(&cfg.kafka)?);
        // A model file in the configuration pins the model; otherwise the registry's
        // promoted one is followed (`shopstream ml train fraud --promote`).
        if cfg.streams.fraud_model.is_empty() {
            p = p.with_model_feed(streams::fraud::ModelFeed::new(
                cfg.services.models_dir.join("fraud"),
                std::time::Duration::from_secs(cfg.services.models_reload_secs.max(1)),
            ));
        }
        let (pool, ecfg, stop) = (pool.clone(), ecfg.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let r = engine::run(p, pool, ecfg, stopped(stop))
                .await
                .context("fraud processor")?;
            Ok(format!("fraud: {r:?}"))
        }));
    }
    if matches!(which, Which::Anomaly | Which::All) {
        let p = AnomalyDetector::new(
            Some(Products::load(&cfg.kafka).context("reading the catalog topic")?),
            AnomalyConfig {
                seasonal: cfg.streams.anomaly_seasonal,
                ..AnomalyConfig::default()
            },
        );
        let (pool, ecfg, stop) = (pool.clone(), ecfg.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let r = engine::run(p, pool, ecfg, stopped(stop))
                .await
                .context("anomaly processor")?;
            Ok(format!("anomaly: {r:?}"))
        }));
    }
    Ok(tasks)
}

pub async fn run(cfg: &Config, args: StreamArgs) -> anyhow::Result<ExitCode> {
    let pool = platform::connect_db(cfg).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = spawn(cfg, &pool, args.which, args.until_idle, stop_rx).await?;
    let mut handles = tasks;
    if args.until_idle.is_none() {
        wait_for_signal(None).await;
        let _ = stop_tx.send(true);
    }
    let mut failed = false;
    for t in handles.drain(..) {
        match t.await? {
            Ok(summary) => println!("{summary}"),
            Err(e) => {
                failed = true;
                eprintln!("error: {e:#}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn rules(cfg: &Config, cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    let pool = platform::connect_db(cfg).await?;
    match cmd {
        RulesCommand::List => {
            for r in streams::fraud::load_rules(&pool).await? {
                println!(
                    "{:<24} v{:<3} {:<8} weight {:.2}  {:<26} {}  {}",
                    r.id,
                    r.version,
                    if r.enabled { "enabled" } else { "disabled" },
                    r.weight,
                    r.kind,
                    r.params,
                    r.description
                );
            }
        }
        RulesCommand::Publish => {
            let n = streams::fraud::publish_rules(&pool, &EventProducer::new(&cfg.kafka)?)
                .await
                .map_err(anyhow::Error::msg)?;
            println!("published {n} rules");
        }
        RulesCommand::Set {
            id,
            kind,
            params,
            weight,
            disable,
            enable,
        } => {
            let current = streams::fraud::load_rules(&pool)
                .await?
                .into_iter()
                .find(|r| r.id == id);
            let params = match params {
                Some(p) => serde_json::from_str(&p).context("--params is not valid JSON")?,
                None => current
                    .as_ref()
                    .map_or(serde_json::json!({}), |r| r.params.clone()),
            };
            let Some(kind) = kind.or(current.as_ref().map(|r| r.kind.clone())) else {
                anyhow::bail!("rule {id} is new: --kind is required");
            };
            let weight = weight.or(current.as_ref().map(|r| r.weight)).unwrap_or(0.5);
            anyhow::ensure!(
                (0.0..=1.0).contains(&weight),
                "--weight must be between 0 and 1"
            );
            let rule = Rule {
                id: id.clone(),
                version: 0,
                kind,
                params,
                weight,
                enabled: if disable {
                    false
                } else {
                    enable || current.as_ref().is_none_or(|r| r.enabled)
                },
                description: current.map_or(String::new(), |r| r.description),
            };
            let v = streams::fraud::set_rule(&pool, &EventProducer::new(&cfg.kafka)?, &rule)
                .await
                .map_err(anyhow::Error::msg)?;
            println!("rule {id} is now version {v}; running fraud processors reload it");
        }
    }
    Ok(ExitCode::SUCCESS)
}
