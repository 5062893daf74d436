//! Product search: BM25 full-text over titles and descriptions, semantic nearest neighbours
//! over their sentence embeddings, blended by reciprocal rank fusion, with category facets
//! and autocomplete from the indexed vocabulary. The index is in memory: a catalogue of
//! 100k products is 150 MB of vectors and an exact scan of them takes milliseconds.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::Error;
use crate::text::TextEncoder;

/// One searchable product.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
}

/// How a hit was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Matched {
    Text,
    Semantic,
    Both,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: String,
    pub title: String,
    pub category: String,
    /// Reciprocal-rank-fusion score (higher is better).
    pub score: f64,
    pub matched: Matched,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Results {
    pub hits: Vec<Hit>,
    /// Category → matching products (before the category filter).
    pub facets: BTreeMap<String, usize>,
}

/// Lowercase alphanumeric words.
pub fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Candidates taken from each retriever before fusion.
const DEPTH: usize = 50;
/// RRF's k (Cormack et al. 2009).
const RRF_K: f64 = 60.0;
/// Semantic neighbours below this cosine are not matches.
const MIN_COSINE: f32 = 0.25;

pub struct SearchIndex {
    docs: Vec<Doc>,
    dim: usize,
    vectors: Vec<f32>,
    postings: HashMap<String, Vec<(u32, f32)>>,
    doc_len: Vec<f32>,
    avg_len: f32,
    /// Vocabulary, sorted, with document frequency.
    terms: Vec<(String, usize)>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("docs", &self.docs.len())
            .finish()
    }
}

impl SearchIndex {
    /// Indexes `docs`, embedding them in batches (`on_batch(done, total)` reports progress).
    pub fn build(
        docs: Vec<Doc>,
        encoder: Option<&TextEncoder>,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Result<SearchIndex, Error> {
        Self::rebuild(docs, encoder, None, on_batch)
    }

    /// Like [`SearchIndex::build`], reusing the embeddings of `previous` for documents whose
    /// text did not change (a catalogue edit re-embeds only what changed).
    pub fn rebuild(
        docs: Vec<Doc>,
        encoder: Option<&TextEncoder>,
        previous: Option<&SearchIndex>,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Result<SearchIndex, Error> {
        let mut postings: HashMap<String, Vec<(u32, f32)>> = HashMap::new();
        let mut doc_len = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let mut tf: HashMap<String, f32> = HashMap::new();
            let ws = words(&format!("{} {} {}", d.title, d.description, d.category));
            for w in &ws {
                *tf.entry(w.clone()).or_default() += 1.0;
            }
            doc_len.push(ws.len() as f32);
            for (w, n) in tf {
                postings.entry(w).or_default().push((i as u32, n));
            }
        }
        let avg_len = doc_len.iter().sum::<f32>() / doc_len.len().max(1) as f32;
        let mut terms: Vec<(String, usize)> =
            postings.iter().map(|(w, p)| (w.clone(), p.len())).collect();
        terms.sort();
        let (dim, mut vectors) = (encoder.map_or(0, |e| e.dim), Vec::new());
        if let Some(enc) = encoder {
            let text = |d: &Doc| format!("{}. {}", d.title, d.description);
            let known: HashMap<String, &[f32]> = previous
                .filter(|p| p.dim == dim)
                .map(|p| {
                    p.docs
                        .iter()
                        .enumerate()
                        .map(|(i, d)| {
                            (
                                format!("{}\u{0}{}", d.id, text(d)),
                                &p.vectors[i * dim..(i + 1) * dim],
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let key = |d: &Doc| format!("{}\u{0}{}", d.id, text(d));
            let missing: Vec<usize> = (0..docs.len())
                .filter(|i| !known.contains_key(&key(&docs[*i])))
                .collect();
            let mut fresh: HashMap<usize, Vec<f32>> = HashMap::new();
            for (b, chunk) in missing.chunks(32).enumerate() {
                let texts: Vec<String> = chunk.iter().map(|i| text(&docs[*i])).collect();
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                for (i, v) in chunk.iter().zip(enc.embed(&refs)?) {
                    fresh.insert(*i, v);
                }
                on_batch(((b + 1) * 32).min(missing.len()), missing.len());
            }
            for (i, d) in docs.iter().enumerate() {
                match fresh.remove(&i) {
                    Some(v) => vectors.extend(v),
                    None => vectors.extend_from_slice(known[&key(d)]),
                }
            }
        }
        Ok(SearchIndex {
            docs,
            dim,
            vectors,
            postings,
            doc_len,
            avg_len,
            terms,
        })
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Whether the index has embeddings (semantic search).
    pub fn semantic(&self) -> bool {
        self.dim > 0
    }

    fn bm25(&self, q: &str) -> Vec<(u32, f64)> {
        let n = self.docs.len() as f64;
        let mut acc: HashMap<u32, f64> = HashMap::new();
        for w in words(q) {
            let Some(p) = self.postings.get(&w) else {
                continue;
            };
            let idf = ((n - p.len() as f64 + 0.5) / (p.len() as f64 + 0.5) + 1.0).ln();
            for (d, tf) in p {
                let len = f64::from(self.doc_len[*d as usize] / self.avg_len.max(1.0));
                let tf = f64::from(*tf);
                *acc.entry(*d).or_default() += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len));
            }
        }
        let mut v: Vec<(u32, f64)> = acc.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    fn nearest(&self, q: &[f32]) -> Vec<(u32, f32)> {
        if self.dim == 0 || q.len() != self.dim {
            return Vec::new();
        }
        let mut v: Vec<(u32, f32)> = self
            .vectors
            .chunks(self.dim)
            .enumerate()
            .map(|(i, x)| (i as u32, x.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
            .filter(|(_, c)| *c >= MIN_COSINE)
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(DEPTH * 4);
        v
    }

    /// Blended results for `q` (with its embedding when semantic search is on).
    pub fn search(
        &self,
        q: &str,
        q_vec: Option<&[f32]>,
        category: Option<&str>,
        limit: usize,
    ) -> Results {
        let text = self.bm25(q);
        let sem = q_vec.map(|v| self.nearest(v)).unwrap_or_default();
        let mut facets = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for d in text
            .iter()
            .map(|t| t.0)
            .chain(sem.iter().take(DEPTH).map(|s| s.0))
        {
            if seen.insert(d) {
                *facets
                    .entry(self.docs[d as usize].category.clone())
                    .or_insert(0) += 1;
            }
        }
        let keep = |d: &u32| category.is_none_or(|c| self.docs[*d as usize].category == c);
        let mut fused: HashMap<u32, (f64, bool, bool)> = HashMap::new();
        for (rank, (d, _)) in text.iter().filter(|(d, _)| keep(d)).take(DEPTH).enumerate() {
            let e = fused.entry(*d).or_default();
            e.0 += 1.0 / (RRF_K + rank as f64 + 1.0);
            e.1 = true;
        }
        for (rank, (d, _)) in sem.iter().filter(|(d, _)| keep(d)).take(DEPTH).enumerate() {
            let e = fused.entry(*d).or_default();
            e.0 += 1.0 / (RRF_K + rank as f64 + 1.0);
            e.2 = true;
        }
        let mut hits: Vec<(u32, (f64, bool, bool))> = fused.into_iter().collect();
        hits.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
        let hits = hits
            .into_iter()
            .take(limit)
            .map(|(d, (score, t, s))| {
                let doc = &self.docs[d as usize];
                Hit {
                    id: doc.id.clone(),
                    title: doc.title.clone(),
                    category: doc.category.clone(),
                    score,
                    matched: match (t, s) {
                        (true, true) => Matched::Both,
                        (true, false) => Matched::Text,
                        _ => Matched::Semantic,
                    },
                }
            })
            .collect();
        Results { hits, facets }
    }

    /// Completions of the query's last word from the vocabulary (most frequent first), each
    /// with the words before it.
    pub fn suggest(&self, q: &str, limit: usize) -> Vec<String> {
        let ws = words(q);
        let Some((last, before)) = ws.split_last() else {
            return Vec::new();
        };
        let start = self
            .terms
            .partition_point(|(t, _)| t.as_str() < last.as_str());
        let mut found: Vec<&(String, usize)> = self.terms[start..]
            .iter()
            .take_while(|(t, _)| t.starts_with(last.as_str()))
            .collect();
        found.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let head = before.join(" ");
        found
            .into_iter()
            .take(limit)
            .map(|(t, _)| {
                if head.is_empty() {
                    t.clone()
                } else {
                    format!("{head} {t}")
                }
            })
            .collect()
    }
}
