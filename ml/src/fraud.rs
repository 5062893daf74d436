//! The fraud model: logistic regression in candle over the stream processor's order features,
//! trained on labelled orders (the simulator's ground truth and the fraud team's review
//! decisions), evaluated by AUPRC and by precision/recall of the combined score (rules +
//! model) at the review and block thresholds, and exported in the JSON the processor loads.
//! Features are standardised for training; the exported weights work on raw features.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The registry kind of fraud models.
pub const KIND: &str = "fraud";

/// Labelled orders: features (row-major), label, what the rules leave of the score, time.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    pub names: Vec<String>,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    /// Π (1 − rule weight) over the rules that fired (1 when none did).
    pub keep: Vec<f64>,
    pub ts_ms: Vec<i64>,
}

impl Examples {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.names.len();
        &self.x[i * d..(i + 1) * d]
    }
    pub fn push(&mut self, features: &[f32], label: bool, keep: f64, ts_ms: i64) {
        self.x.extend_from_slice(features);
        self.y.push(if label { 1.0 } else { 0.0 });
        self.keep.push(keep);
        self.ts_ms.push(ts_ms);
    }
    /// Rows before and from the 80th time percentile (train, test).
    pub fn split_by_time(&self, train_share: f64) -> (Examples, Examples) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|i| self.ts_ms[*i]);
        let cut = (self.len() as f64 * train_share) as usize;
        let take = |idx: &[usize]| {
            let mut e = Examples {
                names: self.names.clone(),
                ..Examples::default()
            };
            for i in idx {
                e.push(
                    self.row(*i),
                    self.y[*i] > 0.5,
                    self.keep[*i],
                    self.ts_ms[*i],
                );
            }
            e
        };
        (take(&order[..cut]), take(&order[cut..]))
    }
}

/// Logistic regression on raw features.
#[derive(Debug, Clone, PartialEq)]
pub struct LrModel {
    pub bias: f64,
    pub weights: BTreeMap<String, f64>,
}

impl LrModel {
    pub fn probability(&self, names: &[String], row: &[f32]) -> f64 {
        let z = self.bias
            + names
                .iter()
                .zip(row)
                .map(|(n, v)| self.weights.get(n).copied().unwrap_or(0.0) * f64::from(*v))
                .sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }

    /// The model file the stream processor reads (`streams::fraud::Model`).
    pub fn to_json(&self, version: &str, description: &str) -> serde_json::Value {
        serde_json::json!({
            "version": version,
            "description": description,
            "bias": self.bias,
            "weights": self.weights,
        })
    }

    /// Reads that file.
    pub fn from_json(v: &serde_json::Value) -> Result<LrModel, Error> {
        let bias = v["bias"]
            .as_f64()
            .ok_or_else(|| Error::input("fraud model: no bias"))?;
        let weights = serde_json::from_value(v["weights"].clone())
            .map_err(|e| Error::input(format!("fraud model weights: {e}")))?;
        Ok(LrModel { bias, weights })
    }
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrParams {
    pub epochs: usize,
    pub learning_rate: f64,
    pub l2: f64,
}

impl Default for LrParams {
    fn default() -> Self {
        LrParams {
            epochs: 400,
            learning_rate: 0.05,
            l2: 1e-4,
        }
    }
}

/// log(1 + e^z) without overflow: max(z, 0) + log(1 + e^−|z|).
fn softplus(z: &Tensor) -> candle_core::Result<Tensor> {
    z.relu()?
        .add(&z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)
}

/// Full-batch AdamW on the class-balanced logistic loss (frauds are rare: each class weighs
/// half), on standardised features; the result is folded back to raw features.
pub fn train(
    ex: &Examples,
    params: &LrParams,
    on_epoch: &mut dyn FnMut(usize, usize),
) -> Result<LrModel, Error> {
    let (n, d) = (ex.len(), ex.names.len());
    let positives = ex.y.iter().filter(|y| **y > 0.5).count();
    if n == 0 || positives == 0 || positives == n {
        return Err(Error::input(format!(
            "need both fraudulent and legitimate orders to train ({positives} of {n} are fraud)"
        )));
    }
    let mut mean = vec![0f64; d];
    let mut sd = vec![0f64; d];
    for i in 0..n {
        for (k, v) in ex.row(i).iter().enumerate() {
            mean[k] += f64::from(*v) / n as f64;
        }
    }
    for i in 0..n {
        for (k, v) in ex.row(i).iter().enumerate() {
            sd[k] += (f64::from(*v) - mean[k]).powi(2) / n as f64;
        }
    }
    for s in &mut sd {
        *s = s.sqrt().max(1e-6);
    }
    let z: Vec<f32> = (0..n * d)
        .map(|j| ((f64::from(ex.x[j]) - mean[j % d]) / sd[j % d]) as f32)
        .collect();
    let dev = Device::Cpu;
    let x = Tensor::from_vec(z, (n, d), &dev)?;
    let y = Tensor::from_slice(&ex.y, (n, 1), &dev)?;
    let (wp, wn) = (0.5 / positives as f64, 0.5 / (n - positives) as f64);
    let sample_w: Vec<f32> =
        ex.y.iter()
            .map(|y| if *y > 0.5 { wp } else { wn } as f32)
            .collect();
    let sample_w = Tensor::from_vec(sample_w, (n, 1), &dev)?;
    let w = Var::zeros((d, 1), DType::F32, &dev)?;
    let b = Var::zeros((1, 1), DType::F32, &dev)?;
    let mut opt = AdamW::new(
        vec![w.clone(), b.clone()],
        ParamsAdamW {
            lr: params.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    for epoch in 0..params.epochs {
        let logits = x.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
        // y·softplus(−z) + (1 − y)·softplus(z), weighted per class.
        let pos = y.mul(&softplus(&logits.neg()?)?)?;
        let neg = y.affine(-1.0, 1.0)?.mul(&softplus(&logits)?)?;
        let loss = pos.add(&neg)?.mul(&sample_w)?.sum_all()?;
        let loss = loss.add(&(w.as_tensor().sqr()?.sum_all()? * params.l2)?)?;
        opt.backward_step(&loss)?;
        on_epoch(epoch + 1, params.epochs);
    }
    let w: Vec<f32> = w.as_tensor().flatten_all()?.to_vec1()?;
    let b: f32 = b.as_tensor().flatten_all()?.to_vec1::<f32>()?[0];
    let mut weights = BTreeMap::new();
    let mut bias = f64::from(b);
    for k in 0..d {
        let raw = f64::from(w[k]) / sd[k];
        bias -= raw * mean[k];
        weights.insert(ex.names[k].clone(), raw);
    }
    Ok(LrModel { bias, weights })
}

/// Precision and recall of alerts at one threshold of the combined score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AtThreshold {
    pub threshold: u8,
    pub precision: f64,
    pub recall: f64,
    pub alerts: usize,
}

/// How well a model separates fraud on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FraudMetrics {
    pub orders: usize,
    pub frauds: usize,
    /// Area under the precision-recall curve of the combined score (average precision).
    pub auprc: f64,
    /// Of the model probability alone.
    pub auprc_model_only: f64,
    pub review: AtThreshold,
    pub block: AtThreshold,
}

/// The combined 0–99 score, as the stream processor computes it.
pub fn combined(keep: f64, p: f64) -> u8 {
    (99.0 * (1.0 - keep * (1.0 - p))).round().clamp(0.0, 99.0) as u8
}

fn average_precision(scores: &[f64], y: &[f32]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let total = y.iter().filter(|v| **v > 0.5).count().max(1) as f64;
    let (mut tp, mut seen, mut ap) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        // Tied scores enter together (no credit for a lucky order among ties).
        let mut j = i;
        let mut tp_here = 0.0;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if y[order[j]] > 0.5 {
                tp_here += 1.0;
            }
            j += 1;
        }
        tp += tp_here;
        seen += (j - i) as f64;
        ap += tp_here / total * (tp / seen);
        i = j;
    }
    ap
}

/// Metrics of `model` on `ex` at the given review and block thresholds.
pub fn evaluate(model: &LrModel, ex: &Examples, review: u8, block: u8) -> FraudMetrics {
    let p: Vec<f64> = (0..ex.len())
        .map(|i| model.probability(&ex.names, ex.row(i)))
        .collect();
    let score: Vec<f64> = (0..ex.len())
        .map(|i| f64::from(combined(ex.keep[i], p[i])))
        .collect();
    let frauds = ex.y.iter().filter(|v| **v > 0.5).count();
    let at = |t: u8| {
        let alerts: Vec<usize> = (0..ex.len())
            .filter(|i| score[*i] >= f64::from(t))
            .collect();
        let tp = alerts.iter().filter(|i| ex.y[**i] > 0.5).count();
        AtThreshold {
            threshold: t,
            precision: tp as f64 / alerts.len().max(1) as f64,
            recall: tp as f64 / frauds.max(1) as f64,
            alerts: alerts.len(),
        }
    };
    FraudMetrics {
        orders: ex.len(),
        frauds,
        auprc: average_precision(&score, &ex.y),
        auprc_model_only: average_precision(&p, &ex.y),
        review: at(review),
        block: at(block),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_signal_and_folds_standardisation() {
        let mut ex = Examples {
            names: vec!["amount".into(), "noise".into()],
            ..Examples::default()
        };
        for i in 0..2000 {
            let fraud = i % 20 == 0;
            let amount = if fraud {
                900.0 + (i % 7) as f32
            } else {
                100.0 + (i % 300) as f32
            };
            ex.push(&[amount, (i % 13) as f32], fraud, 1.0, i);
        }
        let m = train(&ex, &LrParams::default(), &mut |_, _| {}).unwrap();
        assert!(m.weights["amount"] > 0.0, "{m:?}");
        assert!(m.probability(&ex.names, &[950.0, 3.0]) > 0.9);
        assert!(m.probability(&ex.names, &[150.0, 3.0]) < 0.1);
        let r = evaluate(&m, &ex, 65, 75);
        assert!(r.auprc > 0.99 && r.review.recall > 0.99, "{r:?}");
        assert_eq!(r.frauds, 100);
        let back = LrModel::from_json(&m.to_json("t", "")).unwrap();
        assert_eq!(back, m);
        // Only one class: refused.
        ex.y.iter_mut().for_each(|y| *y = 0.0);
        assert!(train(&ex, &LrParams::default(), &mut |_, _| {}).is_err());
    }

    #[test]
    fn average_precision_counts_ties_together() {
        assert!((average_precision(&[0.9, 0.8, 0.1], &[1.0, 1.0, 0.0]) - 1.0).abs() < 1e-9);
        let tied = average_precision(&[0.5, 0.5], &[1.0, 0.0]);
        assert!((tied - 0.5).abs() < 1e-9, "{tied}");
    }
}
