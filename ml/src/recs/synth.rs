//! Synthetic interactions with a known structure, for benchmarks and tests: items fall into
//! taste clusters, each user prefers one or two clusters, popularity inside a cluster is
//! skewed (Zipf-like), and 15 % of interactions are random noise. A model that learns the
//! clusters beats popularity on it; one that does not, does not.

use rand::{Rng, SeedableRng};

use crate::recs::data::{CART_WEIGHT, Interaction, PURCHASE_WEIGHT, VIEW_WEIGHT};

/// Size of the generated data.
#[derive(Debug, Clone, Copy)]
pub struct SynthSpec {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub clusters: usize,
    pub seed: u64,
}

/// Generates `spec.interactions` rows over 60 days, ids `u<n>` and `i<n>`.
pub fn generate(spec: SynthSpec) -> Vec<Interaction> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let clusters = spec.clusters.max(1);
    let per_cluster = spec.items.div_ceil(clusters).max(1);
    let tastes: Vec<(usize, usize)> = (0..spec.users)
        .map(|_| (rng.random_range(0..clusters), rng.random_range(0..clusters)))
        .collect();
    let start = 1_760_000_000_000i64;
    let span = 60 * 86_400_000i64;
    let mut out = Vec::with_capacity(spec.interactions);
    for n in 0..spec.interactions {
        let u = rng.random_range(0..spec.users.max(1));
        let item = if rng.random_bool(0.15) {
            rng.random_range(0..spec.items.max(1))
        } else {
            let c = if rng.random_bool(0.7) {
                tastes[u].0
            } else {
                tastes[u].1
            };
            // Skewed rank inside the cluster: r = floor(n * x^3).
            let x: f64 = rng.random();
            let r = ((per_cluster as f64) * x * x * x) as usize;
            (c * per_cluster + r).min(spec.items.max(1) - 1)
        };
        let roll: f64 = rng.random();
        let (weight, purchase) = if roll < 0.08 {
            (PURCHASE_WEIGHT, true)
        } else if roll < 0.25 {
            (CART_WEIGHT, false)
        } else {
            (VIEW_WEIGHT, false)
        };
        out.push(Interaction {
            user: format!("u{u}"),
            item: format!("i{item}"),
            weight,
            ts_ms: start + span * n as i64 / spec.interactions.max(1) as i64,
            purchase,
        });
    }
    out
}
