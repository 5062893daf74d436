//! `shopstream ml ...`: train and evaluate models, list the registry, promote and roll back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ml::recs::als::AlsParams;
use ml::recs::data::{Interaction, Weighting};
use ml::recs::model::IndexParams;
use ml::recs::pipeline::{self, TrainOptions};
use ml::registry::Registry;
use warehouse::sql::{Access, SqlEngine};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum MlCommand {
    /// Train a model into the registry (a new version; `--promote` also serves it).
    #[command(subcommand)]
    Train(TrainWhat),
    /// Evaluate a model kind on held-out data, next to its baselines.
    #[command(subcommand)]
    Eval(EvalWhat),
    /// The registry's versions with their metrics; `*` marks the promoted one.
    List {
        /// Only this kind (e.g. recs).
        kind: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve a version (serving and the fraud processor pick it up within
    /// `services.models_reload_secs`); its files are checked against their hashes first.
    Promote {
        /// recs or fraud.
        kind: String,
        /// e.g. v3 (see `shopstream ml list`).
        #[arg(value_name = "VERSION")]
        target: String,
    },
    /// Serve again the version promoted before the current one.
    Rollback {
        /// recs or fraud.
        kind: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrainWhat {
    /// Recommendations: iALS on view / add-to-cart / purchase interactions.
    Recs(RecsArgs),
    /// The fraud model: logistic regression on the stream processor's order features,
    /// labelled by ground truth and review decisions; exported for the processor.
    Fraud(crate::cmd::ml_fraud::FraudArgs),
}

#[derive(Debug, Subcommand)]
pub enum EvalWhat {
    /// Leave-last-out HR@10 and NDCG@10 with full ranking: iALS, popularity, item-kNN.
    Recs(RecsArgs),
    /// AUPRC and precision/recall at the review and block thresholds on a time split,
    /// next to the built-in weights.
    Fraud(crate::cmd::ml_fraud::FraudArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RecsArgs {
    /// A CSV or Parquet file of user,item,weight,timestamp[,kind] rows instead of the
    /// warehouse (views weigh 1, add-to-cart 3, purchases 5 there).
    #[arg(long, value_name = "FILE")]
    pub interactions: Option<PathBuf>,
    /// Latent dimensions.
    #[arg(long, default_value_t = AlsParams::default().factors)]
    pub factors: usize,
    #[arg(long, default_value_t = AlsParams::default().epochs)]
    pub epochs: usize,
    /// L2 regularisation.
    #[arg(long, default_value_t = AlsParams::default().regularization)]
    pub regularization: f32,
    /// Confidence per unit of weight (c = 1 + alpha * weight).
    #[arg(long, default_value_t = AlsParams::default().alpha)]
    pub alpha: f32,
    /// Signals lose half their weight every this many days before the newest (0: no decay).
    #[arg(long, default_value_t = Weighting::default().half_life_days)]
    pub half_life_days: f64,
    /// Trees per item index (default: arroy grows as many as the items need).
    #[arg(long)]
    pub trees: Option<usize>,
    /// Candidates a query collects from the index, as a multiple of arroy's default
    /// (more: better recall, slower queries; `shopstream bench ml --index-sweep` compares).
    #[arg(long, default_value_t = IndexParams::default().oversampling)]
    pub oversampling: usize,
    /// Catalogues of at most this many items are scored exactly from the vectors in memory
    /// instead of through the index (0: always the index).
    #[arg(long, default_value_t = IndexParams::default().scan_up_to)]
    pub scan_up_to: usize,
    /// Skip the evaluation `train` runs first to record the model's metrics.
    #[arg(long)]
    pub no_eval: bool,
    /// Promote the new version at once.
    #[arg(long)]
    pub promote: bool,
    /// Print JSON (eval).
    #[arg(long)]
    pub json: bool,
}

impl RecsArgs {
    fn options(&self, source: String, categories: HashMap<String, String>) -> TrainOptions {
        TrainOptions {
            params: AlsParams {
                factors: self.factors,
                epochs: self.epochs,
                regularization: self.regularization,
                alpha: self.alpha,
                ..AlsParams::default()
            },
            weighting: Weighting {
                half_life_days: self.half_life_days,
            },
            categories,
            source,
            evaluate: !self.no_eval,
            index: IndexParams {
                trees: self.trees,
                oversampling: self.oversampling,
                scan_up_to: self.scan_up_to,
            },
        }
    }
}

/// Interactions (views 1, add-to-cart 3, purchases 5) of signed-in users in the warehouse.
const INTERACTIONS_SQL: &str = "
SELECT CAST(user_id AS VARCHAR) AS user, CAST(product_id AS VARCHAR) AS item, 1.0 AS weight,
       event_time AS timestamp, 'view' AS kind
FROM silver.product_viewed_v1 WHERE user_id IS NOT NULL
UNION ALL
SELECT CAST(user_id AS VARCHAR), CAST(product_id AS VARCHAR), 3.0, event_time, 'cart'
FROM silver.cart_item_added_v1 WHERE user_id IS NOT NULL
UNION ALL
SELECT CAST(o.customer_id AS VARCHAR), CAST(i.product_id AS VARCHAR), 5.0, i.placed_at, 'purchase'
FROM gold.fact_order_items i JOIN gold.fact_orders o ON o.order_id = i.order_id
WHERE i.product_id IS NOT NULL";

const CATEGORIES_SQL: &str = "
SELECT CAST(product_id AS VARCHAR) AS item, category FROM gold.dim_product
WHERE valid_to IS NULL AND category IS NOT NULL";

/// Interactions and item categories from the warehouse's silver and gold tables.
pub async fn from_warehouse(
    cfg: &Config,
) -> anyhow::Result<(Vec<Interaction>, HashMap<String, String>)> {
    use arrow::array::AsArray;
    use warehouse::datafusion::arrow;
    let lake = warehouse::Lake::new(&cfg.warehouse.dir);
    let sql = SqlEngine::open(lake, &cfg.warehouse)
        .await
        .context("opening the warehouse")?;
    let result = sql
        .query(INTERACTIONS_SQL, "ml", Access::Admin)
        .await
        .with_context(|| {
            format!(
                "reading interactions from the warehouse at {} (has `shopstream warehouse load` \
                 and `build` run? or pass --interactions FILE)",
                cfg.warehouse.dir.display()
            )
        })?;
    let mut rows = Vec::new();
    for b in &result.batches {
        ml::recs::data::from_batch(b, &mut rows).map_err(anyhow::Error::msg)?;
    }
    let mut categories = HashMap::new();
    let cats = sql.query(CATEGORIES_SQL, "ml", Access::Admin).await?;
    for b in &cats.batches {
        let cast = |i: usize| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8);
        let (items, cs) = (cast(0)?, cast(1)?);
        for (i, c) in items
            .as_string::<i32>()
            .iter()
            .zip(cs.as_string::<i32>().iter())
        {
            if let (Some(i), Some(c)) = (i, c) {
                categories.insert(i.to_string(), c.to_string());
            }
        }
    }
    Ok((rows, categories))
}

async fn load(
    cfg: &Config,
    args: &RecsArgs,
) -> anyhow::Result<(Vec<Interaction>, HashMap<String, String>, String)> {
    match &args.interactions {
        Some(path) => {
            let p = path.clone();
            let rows = tokio::task::spawn_blocking(move || ml::recs::data::read_file(&p)).await??;
            Ok((rows, HashMap::new(), path.display().to_string()))
        }
        None => {
            let (rows, cats) = from_warehouse(cfg).await?;
            Ok((rows, cats, "warehouse".into()))
        }
    }
}

pub async fn run(cfg: &Config, cmd: MlCommand) -> anyhow::Result<ExitCode> {
    let registry = Registry::new(&cfg.services.models_dir);
    match cmd {
        MlCommand::Train(TrainWhat::Recs(args)) => {
            let (rows, cats, source) = load(cfg, &args).await?;
            eprintln!("training on {} interactions from {source}", rows.len());
            let opts = args.options(source, cats);
            let reg = registry.clone();
            let meta =
                tokio::task::spawn_blocking(move || pipeline::train(&rows, &opts, &reg)).await??;
            println!(
                "recs {} trained in {:.1} s: {} users, {} items{}",
                meta.version,
                meta.train_secs,
                meta.metrics.get("users").copied().unwrap_or(0.0),
                meta.metrics.get("items").copied().unwrap_or(0.0),
                meta.metrics
                    .get("hr_at_10")
                    .map(|h| format!(
                        ", HR@10 {h:.3} (popularity {:.3})",
                        meta.metrics["popularity_hr_at_10"]
                    ))
                    .unwrap_or_default()
            );
            if args.promote {
                registry.promote(pipeline::KIND, &meta.version)?;
                println!("promoted recs {}", meta.version);
            }
            Ok(ExitCode::SUCCESS)
        }
        MlCommand::Train(TrainWhat::Fraud(args)) => {
            crate::cmd::ml_fraud::train(cfg, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        MlCommand::Eval(EvalWhat::Fraud(args)) => {
            crate::cmd::ml_fraud::eval(cfg, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        MlCommand::Eval(EvalWhat::Recs(args)) => {
            let (rows, cats, source) = load(cfg, &args).await?;
            eprintln!("evaluating on {} interactions from {source}", rows.len());
            let opts = args.options(source, cats);
            let r = tokio::task::spawn_blocking(move || pipeline::evaluate(&rows, &opts)).await??;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "leave-last-out, full ranking over {} items, {} test users, {} training interactions",
                    r.items, r.test_users, r.train_interactions
                );
                println!("{:<12} {:>8} {:>9}", "model", "HR@10", "NDCG@10");
                for (name, m) in [
                    ("ials", r.als),
                    ("popularity", r.popularity),
                    ("item-knn", r.item_knn),
                ] {
                    println!("{name:<12} {:>8.4} {:>9.4}", m.hr_at_10, m.ndcg_at_10);
                }
                println!("iALS trained in {:.1} s", r.als_train_secs);
            }
            Ok(ExitCode::SUCCESS)
        }
        MlCommand::List { kind, json } => {
            let listed = registry.list(kind.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
                return Ok(ExitCode::SUCCESS);
            }
            if listed.is_empty() {
                println!("no models in {}", registry.root().display());
            }
            for l in listed {
                let m = &l.metadata;
                let metrics: Vec<String> = m
                    .metrics
                    .iter()
                    .filter(|(k, _)| !k.starts_with("popularity") && !k.starts_with("item_knn"))
                    .map(|(k, v)| format!("{k}={v:.4}"))
                    .collect();
                println!(
                    "{} {:<6} {:<5} {}  {} rows from {}  {}",
                    if l.promoted { "*" } else { " " },
                    m.kind,
                    m.version,
                    m.created_at.format("%Y-%m-%d %H:%M:%S"),
                    m.rows,
                    m.source,
                    metrics.join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        MlCommand::Promote { kind, target } => {
            let m = registry.promote(&kind, &target)?;
            println!("promoted {} {} (files verified)", m.kind, m.version);
            Ok(ExitCode::SUCCESS)
        }
        MlCommand::Rollback { kind } => {
            let m = registry.rollback(&kind)?;
            println!("rolled back: {} {} is promoted again", m.kind, m.version);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Interactions `up` waits for before it trains the first recommendation model.
const INITIAL_MIN_INTERACTIONS: usize = 1_000;

/// `up`'s first model: when no recommendation model is promoted yet and the warehouse holds
/// enough interactions, trains one and promotes it. Returns the version when it did.
pub async fn train_initial_if_missing(cfg: &Config) -> anyhow::Result<Option<String>> {
    let registry = Registry::new(&cfg.services.models_dir);
    if registry.promoted(pipeline::KIND)?.is_some() {
        return Ok(None);
    }
    let (rows, cats) = match from_warehouse(cfg).await {
        Ok(r) => r,
        // Silver or gold not built yet: try again after the next build.
        Err(e) => {
            tracing::debug!(error = %e, "no interactions for a first model yet");
            return Ok(None);
        }
    };
    if rows.len() < INITIAL_MIN_INTERACTIONS {
        return Ok(None);
    }
    let opts = TrainOptions {
        source: "warehouse".into(),
        categories: cats,
        evaluate: true,
        ..TrainOptions::default()
    };
    let reg = registry.clone();
    let meta = tokio::task::spawn_blocking(move || pipeline::train(&rows, &opts, &reg)).await??;
    registry.promote(pipeline::KIND, &meta.version)?;
    tracing::info!(version = %meta.version, rows = meta.rows, "first recommendation model trained and promoted");
    Ok(Some(meta.version))
}
