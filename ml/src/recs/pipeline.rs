//! `ml train recs` and `ml eval recs` as library calls: interactions in, a committed
//! registry version (or an evaluation report) out, with progress on the way.

use std::collections::{BTreeMap, HashMap};

use chrono::{TimeZone, Utc};

use crate::Error;
use crate::progress::Progress;
use crate::recs::als::{self, AlsParams};
use crate::recs::data::{Dataset, Interaction, Weighting};
use crate::recs::eval::{self, EvalReport};
use crate::registry::{Metadata, Registry};

/// The registry kind of recommendation models.
pub const KIND: &str = "recs";

/// How to train.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    pub params: AlsParams,
    pub weighting: Weighting,
    /// Category per item id, stored with the model for the category filter.
    pub categories: HashMap<String, String>,
    /// Where the interactions came from (recorded in the metadata).
    pub source: String,
    /// Also run the leave-last-out evaluation and record its metrics.
    pub evaluate: bool,
    /// How the item indexes are built and queried.
    pub index: crate::recs::model::IndexParams,
}

/// Leave-last-out evaluation with progress.
pub fn evaluate(rows: &[Interaction], opts: &TrainOptions) -> Result<EvalReport, Error> {
    let mut bar = Progress::new("eval epochs", opts.params.epochs as u64);
    let report = eval::evaluate(rows, opts.weighting, &opts.params, &mut |e, _| {
        bar.set(e as u64)
    })?;
    bar.finish();
    Ok(report)
}

/// Trains on every row, writes a new registry version and returns its metadata.
pub fn train(
    rows: &[Interaction],
    opts: &TrainOptions,
    registry: &Registry,
) -> Result<Metadata, Error> {
    let mut metrics = BTreeMap::new();
    if opts.evaluate {
        let r = evaluate(rows, opts)?;
        metrics.insert("hr_at_10".into(), r.als.hr_at_10);
        metrics.insert("ndcg_at_10".into(), r.als.ndcg_at_10);
        metrics.insert("popularity_hr_at_10".into(), r.popularity.hr_at_10);
        metrics.insert("popularity_ndcg_at_10".into(), r.popularity.ndcg_at_10);
        metrics.insert("item_knn_hr_at_10".into(), r.item_knn.hr_at_10);
        metrics.insert("item_knn_ndcg_at_10".into(), r.item_knn.ndcg_at_10);
        metrics.insert("eval_users".into(), r.test_users as f64);
    }
    let started = std::time::Instant::now();
    let data = Dataset::build(rows, opts.weighting)?;
    let mut bar = Progress::new("train epochs", opts.params.epochs as u64);
    let model = als::train(&data.matrix, data.items.len(), &opts.params, &mut |e, _| {
        bar.set(e as u64)
    })?;
    bar.finish();
    let train_secs = started.elapsed().as_secs_f64();
    let staged = registry.stage(KIND)?;
    let mut bar = Progress::new("index items", data.items.len() as u64);
    crate::recs::model::save(
        staged.dir(),
        &data,
        &model,
        &opts.categories,
        opts.index,
        &mut |i, _| bar.set(i as u64),
    )?;
    bar.finish();
    metrics.insert("users".into(), data.users.len() as f64);
    metrics.insert("items".into(), data.items.len() as f64);
    let time = |ms: i64| Utc.timestamp_millis_opt(ms).single();
    let meta = Metadata {
        kind: KIND.into(),
        version: String::new(),
        created_at: Utc::now(),
        source: opts.source.clone(),
        data_from: time(data.time_range.0),
        data_to: time(data.time_range.1),
        rows: data.interactions as u64,
        train_secs,
        params: serde_json::json!({
            "algorithm": "ials-cg",
            "als": opts.params,
            "half_life_days": opts.weighting.half_life_days,
            "index": opts.index,
        }),
        metrics,
        files: BTreeMap::new(),
    };
    registry.commit(staged, meta)
}
