//! Leave-last-out evaluation with full ranking: each user's most recent distinct item is held
//! out, models train on the rest, and the held-out item is ranked against **every** item the
//! user has not interacted with in training (no sampled negatives). Ties rank pessimistically.

use std::collections::HashMap;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::recs::als::{self, AlsParams};
use crate::recs::baselines::{ItemKnn, popularity};
use crate::recs::data::{Dataset, Interaction, Weighting};

/// Hit rate and NDCG at 10 over the test users.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub hr_at_10: f64,
    pub ndcg_at_10: f64,
}

/// What `shopstream ml eval recs` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub test_users: usize,
    pub items: usize,
    pub train_interactions: usize,
    pub als: Metrics,
    pub popularity: Metrics,
    pub item_knn: Metrics,
    pub als_train_secs: f64,
}

/// Training rows and, per test user, the held-out item.
pub struct Split {
    pub train: Vec<Interaction>,
    pub test: Vec<(String, String)>,
}

/// Holds out each user's latest distinct item (users with at least two distinct items).
pub fn leave_last_out(rows: &[Interaction]) -> Split {
    // Latest time per (user, item) and the number of distinct items per user.
    let mut last: HashMap<(&str, &str), i64> = HashMap::new();
    for r in rows {
        let t = last.entry((&r.user, &r.item)).or_insert(i64::MIN);
        *t = (*t).max(r.ts_ms);
    }
    let mut held: HashMap<&str, (&str, i64, usize)> = HashMap::new();
    for ((u, i), t) in &last {
        let e = held.entry(u).or_insert((i, *t, 0));
        e.2 += 1;
        if (*t, *i) > (e.1, e.0) {
            e.0 = i;
            e.1 = *t;
        }
    }
    let held: HashMap<&str, &str> = held
        .into_iter()
        .filter(|(_, (_, _, n))| *n >= 2)
        .map(|(u, (i, _, _))| (u, i))
        .collect();
    let train = rows
        .iter()
        .filter(|r| held.get(r.user.as_str()) != Some(&r.item.as_str()))
        .cloned()
        .collect();
    let mut test: Vec<(String, String)> = held
        .into_iter()
        .map(|(u, i)| (u.to_string(), i.to_string()))
        .collect();
    test.sort();
    Split { train, test }
}

/// Accumulates rank-based metrics.
#[derive(Default)]
struct Acc {
    hits: f64,
    ndcg: f64,
    n: usize,
}

impl Acc {
    /// `scores` of every item for one user; `seen` (sorted) are excluded from the ranking.
    fn add(&mut self, scores: &[f32], target: usize, seen: &[u32]) {
        let s = scores[target];
        let mut rank = 0usize;
        for (j, v) in scores.iter().enumerate() {
            if j != target && *v >= s && seen.binary_search(&(j as u32)).is_err() {
                rank += 1;
                if rank >= 10 {
                    break;
                }
            }
        }
        if rank < 10 {
            self.hits += 1.0;
            self.ndcg += 1.0 / ((rank + 2) as f64).log2();
        }
        self.n += 1;
    }
    fn metrics(&self) -> Metrics {
        let n = self.n.max(1) as f64;
        Metrics {
            hr_at_10: self.hits / n,
            ndcg_at_10: self.ndcg / n,
        }
    }
}

/// Splits, trains iALS and both baselines on the training part, and ranks the held-out items.
pub fn evaluate(
    rows: &[Interaction],
    weighting: Weighting,
    params: &AlsParams,
    on_epoch: als::OnEpoch<'_>,
) -> Result<EvalReport, Error> {
    let split = leave_last_out(rows);
    if split.test.is_empty() {
        return Err(Error::input(
            "no user has two distinct items: nothing to hold out for evaluation",
        ));
    }
    // Number every item (test-only ones too) so all models rank the same item set.
    let mut items = Vec::new();
    let mut item_index = HashMap::new();
    for r in rows {
        item_index.entry(r.item.clone()).or_insert_with(|| {
            items.push(r.item.clone());
            (items.len() - 1) as u32
        });
    }
    let data = Dataset::build_with(&split.train, weighting, items, item_index);
    let n_items = data.items.len();
    let by_item = data.matrix.transpose(n_items);
    let started = std::time::Instant::now();
    let model = als::train(&data.matrix, n_items, params, on_epoch)?;
    let als_train_secs = started.elapsed().as_secs_f64();
    let pop = popularity(&by_item);
    let knn = ItemKnn::fit(&data.matrix, &by_item, 100);

    let test: Vec<(usize, usize)> = split
        .test
        .iter()
        .filter_map(|(u, i)| {
            Some((
                *data.user_index.get(u)? as usize,
                data.item_index[i] as usize,
            ))
        })
        .collect();
    let (mut a, mut p, mut k) = (Acc::default(), Acc::default(), Acc::default());
    let items_t = model.items.to_tensor()?.t()?.contiguous()?;
    let mut knn_scores = vec![0f32; n_items];
    for batch in test.chunks(512) {
        let rows: Vec<f32> = batch
            .iter()
            .flat_map(|(u, _)| model.users.row(*u).iter().copied())
            .collect();
        let u = Tensor::from_slice(
            &rows,
            (batch.len(), model.users.dim),
            &candle_core::Device::Cpu,
        )?;
        let scores: Vec<Vec<f32>> = u.matmul(&items_t)?.to_vec2()?;
        for ((user, target), s) in batch.iter().zip(&scores) {
            let seen = data.matrix.row(*user).0;
            a.add(s, *target, seen);
            p.add(&pop, *target, seen);
            knn.scores_into(data.matrix.row(*user), &mut knn_scores);
            k.add(&knn_scores, *target, seen);
        }
    }
    Ok(EvalReport {
        test_users: test.len(),
        items: n_items,
        train_interactions: split.train.len(),
        als: a.metrics(),
        popularity: p.metrics(),
        item_knn: k.metrics(),
        als_train_secs,
    })
}
