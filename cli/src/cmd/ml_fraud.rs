//! `shopstream ml train|eval fraud`: the fraud model's training data is the stream
//! processor's own features, replayed over the events (users, orders, payments) in time
//! order with the same code the processor runs, labelled by the simulator's ground truth
//! and by the fraud team's review decisions (`fraud.alert.resolved`, which win).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use events::domain::fraud::Resolution;
use events::{Envelope, Event, Topic};
use ingest::simulate::{Generator, GroundTruth, SimConfig};
use ml::fraud::{Examples, FraudMetrics, KIND, LrModel, LrParams};
use ml::registry::{Metadata, Registry};
use streams::fraud::{FraudDetector, FraudState, Model, Thresholds};
use uuid::Uuid;
use warehouse::sql::{Access, SqlEngine};

use crate::config::Config;

/// Features the model weighs (raw counts and flags; `amount_minor` and `account_age_min`
/// enter through `log_amount_eur` and `new_account`).
const SKIP: [&str; 2] = ["amount_minor", "account_age_min"];

#[derive(Debug, Clone, Args)]
pub struct FraudArgs {
    /// Train on this many events of simulated traffic (generated here, with its ground
    /// truth) instead of the warehouse's events.
    #[arg(long, value_name = "EVENTS")]
    pub simulate: Option<usize>,
    /// Seed of the simulated traffic.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Share of simulated sessions that are fraud.
    #[arg(long, default_value_t = 0.03)]
    pub fraud_rate: f64,
    /// A label log (JSON Lines, `shopstream simulate --labels`) for warehouse events.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    #[arg(long, default_value_t = LrParams::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = LrParams::default().learning_rate)]
    pub learning_rate: f64,
    /// Promote the new version: running fraud processors swap to it between batches.
    #[arg(long)]
    pub promote: bool,
    /// Print JSON (eval).
    #[arg(long)]
    pub json: bool,
}

/// Events and fraud order ids.
async fn gather(
    cfg: &Config,
    args: &FraudArgs,
) -> anyhow::Result<(Vec<Envelope>, HashSet<Uuid>, String)> {
    if let Some(n) = args.simulate {
        let mut g = Generator::new(SimConfig {
            seed: args.seed,
            fraud_rate: args.fraud_rate.clamp(0.0, 1.0),
            anomaly_every_secs: 0,
            ..SimConfig::default()
        });
        let events: Vec<Envelope> = g.by_ref().take(n).collect();
        let frauds = g
            .take_labels()
            .into_iter()
            .filter_map(|l| match l {
                GroundTruth::Fraud(f) => Some(f.order_ids),
                GroundTruth::Anomaly(_) => None,
            })
            .flatten()
            .collect();
        return Ok((events, frauds, format!("simulated:{n}:seed{}", args.seed)));
    }
    let lake = warehouse::Lake::new(&cfg.warehouse.dir);
    let sql = SqlEngine::open(lake, &cfg.warehouse).await?;
    let tables: Vec<String> = [
        Topic::Users,
        Topic::Orders,
        Topic::Payments,
        Topic::FraudAlerts,
    ]
    .into_iter()
    .map(|t| {
        format!(
            "SELECT event_id, event_type, source, subject, event_time, payload FROM bronze.{}",
            warehouse::bronze::table_name(t)
        )
    })
    .collect();
    let result = sql
        .query(&tables.join(" UNION ALL "), "ml", Access::Admin)
        .await
        .with_context(|| {
            format!(
                "reading events from the warehouse at {} (has `shopstream warehouse load` run? \
                 or pass --simulate EVENTS)",
                cfg.warehouse.dir.display()
            )
        })?;
    let mut events = Vec::new();
    for b in &result.batches {
        use warehouse::datafusion::arrow::array::AsArray;
        use warehouse::datafusion::arrow::compute::cast;
        use warehouse::datafusion::arrow::datatypes::DataType;
        let s = |i: usize| cast(b.column(i), &DataType::Utf8);
        let (id, ty, src, sub, payload) = (s(0)?, s(1)?, s(2)?, s(3)?, s(5)?);
        use warehouse::datafusion::arrow::datatypes::{Int64Type, TimeUnit};
        let time = cast(
            &cast(
                b.column(4),
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?,
            &DataType::Int64,
        )?;
        let time = time.as_primitive::<Int64Type>();
        let col = |a: &std::sync::Arc<dyn warehouse::datafusion::arrow::array::Array>, r: usize| {
            let a = a.as_string::<i32>();
            (!a.is_null(r)).then(|| a.value(r).to_owned())
        };
        use warehouse::datafusion::arrow::array::Array;
        for r in 0..b.num_rows() {
            use events::header as h;
            let time = chrono::DateTime::from_timestamp_micros(time.value(r))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            let headers = [
                (h::SPECVERSION, Some(events::SPEC_VERSION.to_owned())),
                (h::ID, col(&id, r)),
                (h::TYPE, col(&ty, r)),
                (h::SOURCE, col(&src, r)),
                (h::TIME, time),
                (h::CONTENT_TYPE, Some(events::CONTENT_TYPE.to_owned())),
                (h::SUBJECT, col(&sub, r)),
            ];
            let p = col(&payload, r).unwrap_or_default();
            match Envelope::decode(
                headers
                    .iter()
                    .map(|(k, v)| (*k, v.as_deref().map(str::as_bytes))),
                Some(p.as_bytes()),
            ) {
                Ok(e) => events.push(e),
                Err(e) => tracing::warn!(error = %e, "skipping an undecodable warehouse event"),
            }
        }
    }
    let mut frauds = HashSet::new();
    if let Some(path) = &args.labels {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            // The log holds fraud and anomaly labels; only fraud ones name orders.
            match serde_json::from_str::<GroundTruth>(line) {
                Ok(GroundTruth::Fraud(l)) => frauds.extend(l.order_ids),
                Ok(GroundTruth::Anomaly(_)) => {}
                Err(e) => anyhow::bail!("{}: line {} is not a label: {e}", path.display(), n + 1),
            }
        }
    }
    Ok((events, frauds, "warehouse".into()))
}

/// Replays `events` through the detector's feature code; labels from `frauds` and reviews.
/// Returns the examples, the number of review decisions, and each example's order id.
fn examples(
    mut events: Vec<Envelope>,
    frauds: &HashSet<Uuid>,
    rules: Vec<streams::fraud::Rule>,
) -> (Examples, usize, Vec<Uuid>) {
    events.sort_by_key(|e| e.time);
    // Review decisions override the ground truth: they are what the fraud team concluded.
    let reviewed: HashMap<Uuid, bool> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::FraudAlertResolved(r) => Some((
                r.order_id?,
                matches!(r.resolution, Resolution::MarkedFraud | Resolution::Blocked),
            )),
            _ => None,
        })
        .collect();
    let detector = FraudDetector::new(rules, Model::builtin(), Thresholds::default());
    let mut st = FraudState::default();
    let mut ex = Examples::default();
    let mut ids = Vec::new();
    for e in &events {
        let now = e.time.timestamp_millis();
        if let Some(s) = detector.observe(&mut st, &e.event, now) {
            if ex.names.is_empty() {
                ex.names = s
                    .features
                    .keys()
                    .filter(|k| !SKIP.contains(k))
                    .map(|k| k.to_string())
                    .collect();
            }
            let row: Vec<f32> = s
                .features
                .iter()
                .filter(|(k, _)| !SKIP.contains(k))
                .map(|(_, v)| *v as f32)
                .collect();
            let id = s.order.order_id;
            let label = reviewed
                .get(&id)
                .copied()
                .unwrap_or_else(|| frauds.contains(&id));
            ex.push(&row, label, s.keep, now);
            ids.push(id);
        }
    }
    (ex, reviewed.len(), ids)
}

fn builtin() -> anyhow::Result<LrModel> {
    let m = Model::builtin();
    Ok(LrModel {
        bias: m.bias,
        weights: m.weights.into_iter().collect(),
    })
}

/// What `train` and `eval` print.
#[derive(Debug, serde::Serialize)]
pub struct FraudReport {
    pub source: String,
    pub train_orders: usize,
    pub reviewed_orders: usize,
    pub trained: FraudMetrics,
    pub builtin: FraudMetrics,
}

fn print(r: &FraudReport) {
    println!(
        "fraud model on {} (time split: {} training orders, {} test orders with {} frauds; {} review decisions)",
        r.source, r.train_orders, r.trained.orders, r.trained.frauds, r.reviewed_orders
    );
    println!(
        "{:<10} {:>7} {:>11}  {:>22}  {:>22}",
        "model", "AUPRC", "AUPRC(lr)", "review: P / R (alerts)", "block: P / R (alerts)"
    );
    for (name, m) in [("trained", &r.trained), ("lr-v0", &r.builtin)] {
        println!(
            "{name:<10} {:>7.4} {:>11.4}  {:>6.3} / {:.3} ({:>5})  {:>6.3} / {:.3} ({:>5})",
            m.auprc,
            m.auprc_model_only,
            m.review.precision,
            m.review.recall,
            m.review.alerts,
            m.block.precision,
            m.block.recall,
            m.block.alerts
        );
    }
}

/// Gathers, replays, splits by time, trains on the first 80 % and evaluates on the rest
/// (the same split for the built-in weights).
async fn fit(cfg: &Config, args: &FraudArgs) -> anyhow::Result<(LrModel, FraudReport)> {
    let (events, frauds, source) = gather(cfg, args).await?;
    let pool = crate::cmd::platform::connect_db(cfg).await?;
    services::migrate(&pool).await?;
    let rules = streams::fraud::load_rules(&pool).await?;
    eprintln!(
        "replaying {} events through the fraud features",
        events.len()
    );
    let (ex, reviewed, _) =
        tokio::task::spawn_blocking(move || examples(events, &frauds, rules)).await?;
    anyhow::ensure!(
        ex.len() >= 50,
        "only {} orders to learn from (need 50)",
        ex.len()
    );
    let (train, test) = ex.split_by_time(0.8);
    let params = LrParams {
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        ..LrParams::default()
    };
    let train_orders = train.len();
    let (model, test) = tokio::task::spawn_blocking(move || {
        let mut bar = ml::progress::Progress::new("train epochs", params.epochs as u64);
        let m = ml::fraud::train(&train, &params, &mut |e, _| bar.set(e as u64));
        bar.finish();
        m.map(|m| (m, test))
    })
    .await??;
    let th = (cfg.streams.review_threshold, cfg.streams.block_threshold);
    let report = FraudReport {
        source,
        train_orders,
        reviewed_orders: reviewed,
        trained: ml::fraud::evaluate(&model, &test, th.0, th.1),
        builtin: ml::fraud::evaluate(&builtin()?, &test, th.0, th.1),
    };
    Ok((model, report))
}

pub async fn eval(cfg: &Config, args: &FraudArgs) -> anyhow::Result<()> {
    let (_, report) = fit(cfg, args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(())
}

pub async fn train(cfg: &Config, args: &FraudArgs) -> anyhow::Result<Metadata> {
    let started = std::time::Instant::now();
    let (model, report) = fit(cfg, args).await?;
    print(&report);
    let meta = store(cfg, args, model, report, started).await?;
    println!(
        "fraud {} written{}",
        meta.version,
        if args.promote {
            " and promoted (running fraud processors swap to it between batches)"
        } else {
            ""
        }
    );
    Ok(meta)
}

/// `up`'s first fraud model: when none is promoted, one trained on simulated traffic (the
/// built-in weights score until then). Returns the version when it trained one.
pub async fn train_initial_if_missing(cfg: &Config) -> anyhow::Result<Option<String>> {
    let registry = Registry::new(&cfg.services.models_dir);
    if registry.promoted(KIND)?.is_some() {
        return Ok(None);
    }
    let args = FraudArgs {
        simulate: Some(200_000),
        seed: 7,
        fraud_rate: 0.03,
        labels: None,
        epochs: LrParams::default().epochs,
        learning_rate: LrParams::default().learning_rate,
        promote: true,
        json: false,
    };
    let started = std::time::Instant::now();
    let (model, report) = fit(cfg, &args).await?;
    tracing::info!(
        auprc = report.trained.auprc,
        builtin_auprc = report.builtin.auprc,
        "first fraud model trained"
    );
    let meta = store(cfg, &args, model, report, started).await?;
    Ok(Some(meta.version))
}

async fn store(
    cfg: &Config,
    args: &FraudArgs,
    model: LrModel,
    report: FraudReport,
    started: std::time::Instant,
) -> anyhow::Result<Metadata> {
    let registry = Registry::new(&cfg.services.models_dir);
    let staged = registry.stage(KIND)?;
    let json = model.to_json(
        "staged",
        "Logistic regression trained by `shopstream ml train fraud` on replayed order features.",
    );
    std::fs::write(
        staged.dir().join("model.json"),
        serde_json::to_vec_pretty(&json)?,
    )?;
    let m = &report.trained;
    let metrics = [
        ("auprc", m.auprc),
        ("auprc_model_only", m.auprc_model_only),
        ("review_precision", m.review.precision),
        ("review_recall", m.review.recall),
        ("block_precision", m.block.precision),
        ("block_recall", m.block.recall),
        ("builtin_auprc", report.builtin.auprc),
        ("test_orders", m.orders as f64),
        ("test_frauds", m.frauds as f64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let meta = registry.commit(
        staged,
        Metadata {
            kind: KIND.into(),
            version: String::new(),
            created_at: chrono::Utc::now(),
            source: report.source.clone(),
            data_from: None,
            data_to: None,
            rows: (report.train_orders + m.orders) as u64,
            train_secs: started.elapsed().as_secs_f64(),
            params: serde_json::json!({"algorithm": "logistic-regression", "epochs": args.epochs,
                "learning_rate": args.learning_rate, "split": "first 80 % by time trains, last 20 % tests"}),
            metrics,
            files: Default::default(),
        },
    )?;
    tracing::info!(version = %meta.version, dir = %registry.dir(KIND, &meta.version).display(), "fraud model written");
    if args.promote {
        registry.promote(KIND, &meta.version)?;
        tracing::info!(version = %meta.version, "fraud model promoted: running processors swap to it between batches");
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::domain::fraud::FraudAlertResolved;

    #[test]
    fn review_decisions_override_the_ground_truth() {
        let mut g = Generator::new(SimConfig {
            seed: 3,
            fraud_rate: 0.05,
            anomaly_every_secs: 0,
            ..SimConfig::default()
        });
        let mut events: Vec<Envelope> = g.by_ref().take(30_000).collect();
        let frauds: HashSet<Uuid> = g
            .take_labels()
            .into_iter()
            .filter_map(|l| match l {
                GroundTruth::Fraud(f) => Some(f.order_ids),
                GroundTruth::Anomaly(_) => None,
            })
            .flatten()
            .collect();
        let orders: Vec<(Uuid, Uuid, chrono::DateTime<chrono::Utc>)> = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::OrderPlaced(o) => Some((o.order_id, o.customer_id, e.time)),
                _ => None,
            })
            .collect();
        let fraud = *orders
            .iter()
            .find(|o| frauds.contains(&o.0))
            .expect("a fraud order");
        let legit = *orders
            .iter()
            .find(|o| !frauds.contains(&o.0))
            .expect("a legit order");
        let label = |ex: &Examples, ids: &[Uuid], id: Uuid| {
            ex.y[ids
                .iter()
                .position(|i| *i == id)
                .expect("the order is an example")]
        };
        let (before, reviewed, ids) = examples(events.clone(), &frauds, Vec::new());
        assert_eq!(reviewed, 0);
        assert_eq!(before.len(), orders.len(), "one example per order");
        assert_eq!(
            (label(&before, &ids, fraud.0), label(&before, &ids, legit.0)),
            (1.0, 0.0)
        );
        let resolve = |o: (Uuid, Uuid, chrono::DateTime<chrono::Utc>), resolution| {
            Envelope::new(
                "/test",
                FraudAlertResolved {
                    alert_id: Uuid::now_v7(),
                    order_id: Some(o.0),
                    customer_id: o.1,
                    resolution,
                    reviewer_id: Uuid::now_v7(),
                    note: None,
                },
            )
            .with_time(o.2 + chrono::Duration::minutes(5))
        };
        events.push(resolve(fraud, Resolution::Approved));
        events.push(resolve(legit, Resolution::MarkedFraud));
        let (after, reviewed, ids) = examples(events, &frauds, Vec::new());
        assert_eq!(reviewed, 2);
        assert_eq!(
            (label(&after, &ids, fraud.0), label(&after, &ids, legit.0)),
            (0.0, 1.0)
        );
        assert_eq!(before.names, after.names);
    }
}
