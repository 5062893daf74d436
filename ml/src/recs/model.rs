//! A trained recommendation model as a registry version: ids, factors (safetensors), what
//! each user bought, popularity, item categories, and an arroy environment with two indexes
//! over the item vectors (dot product for user → item, cosine for item → similar items).
//! [`Recommender`] is the loaded, queryable form serving holds.

use std::collections::HashMap;
use std::path::Path;

use arroy::distances::{Cosine, DotProduct};
use arroy::{Reader, Writer};
use candle_core::{Device, Tensor};
use heed::{CommitOrAbort, Env, EnvOpenOptions, WithoutTls};
use rand_arroy::SeedableRng;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::recs::als::{AlsModel, Factors};
use crate::recs::baselines::popularity;
use crate::recs::data::Dataset;

const IDS_FILE: &str = "ids.json";
const FACTORS_FILE: &str = "factors.safetensors";
const INDEX_DIR: &str = "index";
const DOT_DB: &str = "dot";
const COSINE_DB: &str = "cosine";
const INDEX_FILE: &str = "index.json";

/// How the arroy indexes are built and queried. A query collects about
/// `trees × k × oversampling` candidate items from the trees before it scores them exactly,
/// so more trees and more oversampling buy recall with time (`shopstream bench ml
/// --index-sweep` measures both).
///
/// Up to `scan_up_to` items, queries skip the index and score every candidate from the
/// vectors in memory: on 10k items with 64 factors that is exact and several times faster
/// than arroy at recall 0.89 (arroy reads each candidate from LMDB, and its trees split
/// dot-product space poorly; figures in docs/decisions.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// Trees per index; `None` lets arroy grow trees until they hold as many nodes as items.
    pub trees: Option<usize>,
    /// Multiplies the candidates a query collects (arroy's default is 1).
    pub oversampling: usize,
    /// Catalogues of at most this many items are scanned exactly instead (0: always arroy).
    #[serde(default = "default_scan_up_to")]
    pub scan_up_to: usize,
}

fn default_scan_up_to() -> usize {
    50_000
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            trees: None,
            oversampling: 16,
            scan_up_to: default_scan_up_to(),
        }
    }
}

/// Everything but the vectors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ids {
    users: Vec<String>,
    items: Vec<String>,
    /// Category per item ("" when unknown).
    categories: Vec<String>,
    /// Users per item in the training data.
    popularity: Vec<f32>,
    /// Per user, items bought.
    bought: Vec<Vec<u32>>,
}

/// Writes the model's files into `dir` (a staged registry version).
pub fn save(
    dir: &Path,
    data: &Dataset,
    model: &AlsModel,
    categories: &HashMap<String, String>,
    index: IndexParams,
    on_item: &mut dyn FnMut(usize, usize),
) -> Result<(), Error> {
    let ids = Ids {
        users: data.users.clone(),
        items: data.items.clone(),
        categories: data
            .items
            .iter()
            .map(|i| categories.get(i).cloned().unwrap_or_default())
            .collect(),
        popularity: popularity(&data.matrix.transpose(data.items.len())),
        bought: data.bought.clone(),
    };
    crate::registry::write_json(&dir.join(IDS_FILE), &ids)?;
    let tensors = HashMap::from([
        ("user".to_string(), model.users.to_tensor()?),
        ("item".to_string(), model.items.to_tensor()?),
    ]);
    candle_core::safetensors::save(&tensors, dir.join(FACTORS_FILE))?;
    write_index(dir, &model.items, index, on_item)
}

/// The index parameters and both arroy indexes of `items`, into the version in `dir`.
fn write_index(
    dir: &Path,
    items: &Factors,
    params: IndexParams,
    on_item: &mut dyn FnMut(usize, usize),
) -> Result<(), Error> {
    crate::registry::write_json(&dir.join(INDEX_FILE), &params)?;
    build_index(&dir.join(INDEX_DIR), items, params, on_item)
}

fn open_env(path: &Path, create: bool) -> Result<Env<WithoutTls>, Error> {
    if create {
        std::fs::create_dir_all(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    }
    // SAFETY: heed requires that the environment is not opened twice in this process and the
    // files are not modified by others while open; registry versions are never rewritten.
    let env = unsafe {
        EnvOpenOptions::new()
            .read_txn_without_tls()
            .map_size(1 << 30)
            .max_dbs(2)
            .open(path)?
    };
    Ok(env)
}

type Dbs = (
    arroy::Database<'static, DotProduct>,
    arroy::Database<'static, Cosine>,
);

fn databases(env: &Env<WithoutTls>) -> Result<Dbs, Error> {
    let wtxn = env.write_txn()?;
    let dbs = env
        .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
            let dot = dbo.create_database(wtxn, Some(DOT_DB))?;
            let cos = dbo.create_database(wtxn, Some(COSINE_DB))?;
            Ok(CommitOrAbort::<_, ()>::Commit((dot, cos)))
        })?
        .unwrap_commit();
    Ok(dbs)
}

fn build_index(
    path: &Path,
    items: &Factors,
    params: IndexParams,
    on_item: &mut dyn FnMut(usize, usize),
) -> Result<(), Error> {
    let env = open_env(path, true)?;
    let (dot, cos) = databases(&env)?;
    let mut wtxn = env.write_txn()?;
    let dw = Writer::<DotProduct>::new(dot, 0, items.dim);
    let cw = Writer::<Cosine>::new(cos, 0, items.dim);
    let n = items.rows();
    for i in 0..n {
        dw.add_item(&mut wtxn, i as u32, items.row(i))?;
        cw.add_item(&mut wtxn, i as u32, items.row(i))?;
        if i % 1000 == 0 || i + 1 == n {
            on_item(i + 1, n);
        }
    }
    let mut rng = rand_arroy::rngs::StdRng::seed_from_u64(7);
    grow(&dw, &mut rng, &mut wtxn, params.trees)?;
    grow(&cw, &mut rng, &mut wtxn, params.trees)?;
    wtxn.commit()?;
    Ok(())
}

/// Builds `writer`'s trees (`trees` of them, or as many as arroy decides).
fn grow<D: arroy::Distance>(
    writer: &Writer<D>,
    rng: &mut rand_arroy::rngs::StdRng,
    wtxn: &mut heed::RwTxn<'_>,
    trees: Option<usize>,
) -> Result<(), Error> {
    let mut b = writer.builder(rng);
    if let Some(t) = trees {
        b.n_trees(t);
    }
    b.build(wtxn)?;
    Ok(())
}

/// Which items a query may return.
#[derive(Debug, Default, Clone)]
pub struct Filter<'a> {
    pub category: Option<&'a str>,
    /// Only these items (e.g. the ones in stock).
    pub only: Option<&'a RoaringBitmap>,
    /// Leave out what the user already bought.
    pub exclude_bought: bool,
}

/// How a recommendation list was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// From the user's own vector.
    Personalized,
    /// The user is unknown to the model: the most popular items.
    Popular,
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub item: String,
    pub category: Option<String>,
    pub score: f32,
}

/// A loaded model, answering queries from its arroy indexes.
pub struct Recommender {
    pub version: String,
    ids: Ids,
    user_index: HashMap<String, u32>,
    item_index: HashMap<String, u32>,
    users: Factors,
    /// Item vectors, and the same of unit length (cosine), for exact scans.
    items: Factors,
    unit: Factors,
    by_category: HashMap<String, RoaringBitmap>,
    all: RoaringBitmap,
    bought: Vec<RoaringBitmap>,
    /// Items by popularity, most popular first.
    popular: Vec<u32>,
    env: Env<WithoutTls>,
    dot: arroy::Database<'static, DotProduct>,
    cos: arroy::Database<'static, Cosine>,
    index: IndexParams,
}

impl std::fmt::Debug for Recommender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommender")
            .field("version", &self.version)
            .field("users", &self.ids.users.len())
            .field("items", &self.ids.items.len())
            .finish()
    }
}

impl Recommender {
    /// Loads the model in `dir` (a registry version directory).
    pub fn load(dir: &Path, version: &str) -> Result<Recommender, Error> {
        let read = |f: &str| {
            std::fs::read(dir.join(f))
                .map_err(|e| Error::Io(format!("{}: {e}", dir.join(f).display())))
        };
        let ids: Ids = serde_json::from_slice(&read(IDS_FILE)?)
            .map_err(|e| Error::Integrity(format!("{IDS_FILE}: {e}")))?;
        let tensors = read_tensors(dir)?;
        let (users, items) = (factors(&tensors, "user")?, factors(&tensors, "item")?);
        if items.rows() != ids.items.len() || items.dim != users.dim {
            return Err(Error::Integrity(format!(
                "{} item vectors of {} dimensions for {} items and {}-dimensional users",
                items.rows(),
                items.dim,
                ids.items.len(),
                users.dim
            )));
        }
        let unit = normalised(&items);
        if users.rows() != ids.users.len() {
            return Err(Error::Integrity(format!(
                "{} user vectors for {} users",
                users.rows(),
                ids.users.len()
            )));
        }
        let index = match std::fs::read(dir.join(INDEX_FILE)) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Integrity(format!("{INDEX_FILE}: {e}")))?,
            // Saved before the parameters were recorded: built with these.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IndexParams::default(),
            Err(e) => {
                return Err(Error::Io(format!(
                    "{}: {e}",
                    dir.join(INDEX_FILE).display()
                )));
            }
        };
        let env = open_env(&dir.join(INDEX_DIR), false)?;
        let rtxn = env.read_txn()?;
        let (dot, cos) = env
            .open_databases_and_commit(rtxn, |dbo, rtxn| -> heed::Result<_> {
                let dot = dbo.open_database(rtxn, Some(DOT_DB))?;
                let cos = dbo.open_database(rtxn, Some(COSINE_DB))?;
                Ok(CommitOrAbort::<_, ()>::Commit((dot, cos)))
            })?
            .unwrap_commit();
        let dot = dot.ok_or_else(|| Error::Integrity("index: no dot-product database".into()))?;
        let cos = cos.ok_or_else(|| Error::Integrity("index: no cosine database".into()))?;
        let mut by_category: HashMap<String, RoaringBitmap> = HashMap::new();
        for (i, c) in ids.categories.iter().enumerate() {
            if !c.is_empty() {
                by_category.entry(c.clone()).or_default().insert(i as u32);
            }
        }
        let mut popular: Vec<u32> = (0..ids.items.len() as u32).collect();
        popular.sort_by(|a, b| {
            ids.popularity[*b as usize]
                .total_cmp(&ids.popularity[*a as usize])
                .then(a.cmp(b))
        });
        Ok(Recommender {
            version: version.to_string(),
            user_index: index_of(&ids.users),
            item_index: index_of(&ids.items),
            users,
            items,
            unit,
            by_category,
            all: (0..ids.items.len() as u32).collect(),
            bought: ids
                .bought
                .iter()
                .map(|b| b.iter().copied().collect())
                .collect(),
            popular,
            ids,
            env,
            dot,
            cos,
            index,
        })
    }

    /// How the index was built and is queried.
    pub fn index_params(&self) -> IndexParams {
        self.index
    }

    /// Queries with another oversampling and scan limit (benchmarks compare them on one
    /// index; a limit of 0 always asks arroy).
    pub fn set_query(&mut self, oversampling: usize, scan_up_to: usize) {
        self.index.oversampling = oversampling.max(1);
        self.index.scan_up_to = scan_up_to;
    }

    /// Whether queries scan the vectors instead of asking the index.
    pub fn scans(&self) -> bool {
        self.ids.items.len() <= self.index.scan_up_to
    }

    fn oversampling(&self) -> std::num::NonZeroUsize {
        std::num::NonZeroUsize::new(self.index.oversampling).unwrap_or(std::num::NonZeroUsize::MIN)
    }

    /// Trees in the dot-product index.
    pub fn trees(&self) -> Result<usize, Error> {
        let rtxn = self.env.read_txn()?;
        Ok(Reader::<DotProduct>::open(&rtxn, 0, self.dot)?.n_trees())
    }

    /// Fills in categories the training data did not know (e.g. from the live catalog).
    pub fn fill_categories(&mut self, mut lookup: impl FnMut(&str) -> Option<String>) {
        for (i, c) in self.ids.categories.iter_mut().enumerate() {
            if c.is_empty()
                && let Some(found) = lookup(&self.ids.items[i])
            {
                self.by_category
                    .entry(found.clone())
                    .or_default()
                    .insert(i as u32);
                *c = found;
            }
        }
    }

    pub fn items(&self) -> usize {
        self.ids.items.len()
    }

    pub fn users(&self) -> usize {
        self.ids.users.len()
    }

    /// The item number of an id, if the model knows it.
    pub fn item_number(&self, item: &str) -> Option<u32> {
        self.item_index.get(item).copied()
    }

    /// Item ids by number.
    pub fn item_id(&self, n: u32) -> &str {
        &self.ids.items[n as usize]
    }

    fn candidates(&self, user: Option<u32>, filter: &Filter<'_>) -> RoaringBitmap {
        let mut c = match filter.category {
            Some(cat) => self.by_category.get(cat).cloned().unwrap_or_default(),
            None => self.all.clone(),
        };
        if let Some(only) = filter.only {
            c &= only;
        }
        if filter.exclude_bought
            && let Some(b) = user.and_then(|u| self.bought.get(u as usize))
        {
            c -= b;
        }
        c
    }

    fn scored(&self, hits: impl IntoIterator<Item = (u32, f32)>) -> Vec<Scored> {
        hits.into_iter()
            .map(|(i, score)| {
                let c = &self.ids.categories[i as usize];
                Scored {
                    item: self.ids.items[i as usize].clone(),
                    category: (!c.is_empty()).then(|| c.clone()),
                    score,
                }
            })
            .collect()
    }

    /// Top `k` items for `user`: personalised when the model knows the user, else popular.
    pub fn recommend(
        &self,
        user: &str,
        k: usize,
        filter: &Filter<'_>,
    ) -> Result<(Strategy, Vec<Scored>), Error> {
        let u = self.user_index.get(user).copied();
        let candidates = self.candidates(u, filter);
        let Some(u) = u else {
            let top = self
                .popular
                .iter()
                .filter(|i| candidates.contains(**i))
                .take(k)
                .map(|i| (*i, self.ids.popularity[*i as usize]));
            return Ok((Strategy::Popular, self.scored(top)));
        };
        if candidates.is_empty() {
            return Ok((Strategy::Personalized, Vec::new()));
        }
        let query = self.users.row(u as usize);
        if self.scans() {
            let top = top_k(&self.items, query, &candidates, k);
            return Ok((Strategy::Personalized, self.scored(top)));
        }
        let rtxn = self.env.read_txn()?;
        let reader = Reader::<DotProduct>::open(&rtxn, 0, self.dot)?;
        let mut q = reader.nns(k);
        q.candidates(&candidates).oversampling(self.oversampling());
        let hits = q.by_vector(&rtxn, query)?;
        Ok((Strategy::Personalized, self.scored(hits)))
    }

    /// The `k` items most similar (cosine of item vectors) to `item`; `None` if unknown.
    pub fn similar(
        &self,
        item: &str,
        k: usize,
        filter: &Filter<'_>,
    ) -> Result<Option<Vec<Scored>>, Error> {
        let Some(i) = self.item_number(item) else {
            return Ok(None);
        };
        let mut candidates = self.candidates(None, filter);
        candidates.remove(i);
        if candidates.is_empty() {
            return Ok(Some(Vec::new()));
        }
        if self.scans() {
            let top = top_k(&self.unit, self.unit.row(i as usize), &candidates, k);
            return Ok(Some(self.scored(top)));
        }
        let rtxn = self.env.read_txn()?;
        let reader = Reader::<Cosine>::open(&rtxn, 0, self.cos)?;
        let Some(v) = reader.item_vector(&rtxn, i)? else {
            return Ok(None);
        };
        let mut q = reader.nns(k);
        q.candidates(&candidates).oversampling(self.oversampling());
        let hits = q.by_vector(&rtxn, &v)?;
        // arroy's cosine distance is (1 − cos) / 2; report the similarity.
        Ok(Some(
            self.scored(hits.into_iter().map(|(j, d)| (j, 1.0 - 2.0 * d))),
        ))
    }

    /// Exact top-`k` by dot product over all items (for measuring the index's recall).
    pub fn exact(&self, user: &str, k: usize) -> Option<Vec<u32>> {
        let u = *self.user_index.get(user)? as usize;
        let rtxn = self.env.read_txn().ok()?;
        let reader = Reader::<DotProduct>::open(&rtxn, 0, self.dot).ok()?;
        let q = self.users.row(u);
        let mut all: Vec<(u32, f32)> = reader
            .iter(&rtxn)
            .ok()?
            .filter_map(|r| r.ok())
            .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum()))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        Some(all.into_iter().take(k).map(|(i, _)| i).collect())
    }

    /// The user ids the model knows (for benchmarks).
    pub fn user_ids(&self) -> &[String] {
        &self.ids.users
    }
}

/// Copies the model in `src` to `dst` with its indexes built anew with `params` (for
/// comparing index settings on one trained model; `dst` must not exist).
pub fn rebuild(src: &Path, dst: &Path, params: IndexParams) -> Result<(), Error> {
    std::fs::create_dir_all(dst).map_err(|e| Error::Io(format!("{}: {e}", dst.display())))?;
    for f in [IDS_FILE, FACTORS_FILE] {
        std::fs::copy(src.join(f), dst.join(f))
            .map_err(|e| Error::Io(format!("{}: {e}", src.join(f).display())))?;
    }
    let items = factors(&read_tensors(src)?, "item")?;
    write_index(dst, &items, params, &mut |_, _| {})
}

/// The `k` candidates with the largest dot product with `query`, best first.
fn top_k(
    vectors: &Factors,
    query: &[f32],
    candidates: &RoaringBitmap,
    k: usize,
) -> Vec<(u32, f32)> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // The smallest of the best k on top; ties go to the lower item number.
    let mut best: BinaryHeap<(Reverse<Score>, u32)> = BinaryHeap::with_capacity(k + 1);
    for i in candidates {
        let s = crate::recs::als::dot(vectors.row(i as usize), query);
        if best.len() < k {
            best.push((Reverse(Score(s)), i));
        } else if best.peek().is_some_and(|(Reverse(min), _)| s > min.0) {
            best.pop();
            best.push((Reverse(Score(s)), i));
        }
    }
    let mut out: Vec<(u32, f32)> = best.into_iter().map(|(Reverse(s), i)| (i, s.0)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// A score ordered by `total_cmp`.
#[derive(Debug, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn normalised(f: &Factors) -> Factors {
    let mut data = f.data.clone();
    for row in data.chunks_exact_mut(f.dim.max(1)) {
        let n = crate::recs::als::dot(row, row).sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|x| *x /= n);
        }
    }
    Factors { dim: f.dim, data }
}

fn index_of(ids: &[String]) -> HashMap<String, u32> {
    ids.iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect()
}

/// The factor tensors ("user", "item") of the version in `dir`.
fn read_tensors(dir: &Path) -> Result<HashMap<String, Tensor>, Error> {
    Ok(candle_core::safetensors::load(
        dir.join(FACTORS_FILE),
        &Device::Cpu,
    )?)
}

/// The `name` vectors of [`read_tensors`]' answer.
fn factors(tensors: &HashMap<String, Tensor>, name: &str) -> Result<Factors, Error> {
    let t = tensors
        .get(name)
        .ok_or_else(|| Error::Integrity(format!("factors: no {name} tensor")))?;
    to_factors(t)
}

fn to_factors(t: &Tensor) -> Result<Factors, Error> {
    let (_, dim) = t.dims2()?;
    Ok(Factors {
        dim,
        data: t.flatten_all()?.to_vec1()?,
    })
}
