//! The baselines every recommendation model is reported against: popularity (how many users
//! interacted with an item) and item-kNN (cosine similarity of item columns, top neighbours
//! per item, a user's score = the summed similarity to what they interacted with).

use crate::recs::data::Csr;

/// Users per item (not weights: one heavy user does not make an item popular).
pub fn popularity(by_item: &Csr) -> Vec<f32> {
    (0..by_item.rows())
        .map(|i| by_item.row(i).0.len() as f32)
        .collect()
}

/// Item-item cosine neighbours.
#[derive(Debug, Clone)]
pub struct ItemKnn {
    /// Per item, (neighbour, similarity), best first.
    pub neighbours: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    /// `k` neighbours per item from `matrix` (users × items) and its transpose `by_item`.
    pub fn fit(matrix: &Csr, by_item: &Csr, k: usize) -> ItemKnn {
        let n = by_item.rows();
        let norms: Vec<f32> = (0..n)
            .map(|i| by_item.row(i).1.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let per = n.div_ceil(threads).max(1);
        let mut neighbours = vec![Vec::new(); n];
        std::thread::scope(|s| {
            for (chunk_no, chunk) in neighbours.chunks_mut(per).enumerate() {
                let norms = &norms;
                s.spawn(move || {
                    let mut acc = vec![0f32; n];
                    let mut touched = Vec::new();
                    for (o, out) in chunk.iter_mut().enumerate() {
                        let i = chunk_no * per + o;
                        let (users, wi) = by_item.row(i);
                        for (u, w) in users.iter().zip(wi) {
                            let (items, wj) = matrix.row(*u as usize);
                            for (j, v) in items.iter().zip(wj) {
                                if *j as usize == i {
                                    continue;
                                }
                                if acc[*j as usize] == 0.0 {
                                    touched.push(*j);
                                }
                                acc[*j as usize] += w * v;
                            }
                        }
                        let mut sims: Vec<(u32, f32)> = touched
                            .drain(..)
                            .map(|j| {
                                let s = acc[j as usize] / (norms[i] * norms[j as usize]).max(1e-12);
                                acc[j as usize] = 0.0;
                                (j, s)
                            })
                            .collect();
                        sims.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                        sims.truncate(k);
                        *out = sims;
                    }
                });
            }
        });
        ItemKnn { neighbours }
    }

    /// Scores of every item for a user who interacted with `history` (item, weight).
    pub fn scores_into(&self, history: (&[u32], &[f32]), out: &mut [f32]) {
        out.fill(0.0);
        for (i, w) in history.0.iter().zip(history.1) {
            for (j, s) in &self.neighbours[*i as usize] {
                out[*j as usize] += s * w;
            }
        }
    }
}
