//! The arroy cosine index over product images. One vector per image; a query returns
//! products (the best of each product's images), optionally within a category. The index
//! lives in its own LMDB environment under a fresh directory, removed when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arroy::distances::Cosine;
use arroy::{Reader, Writer};
use heed::{CommitOrAbort, Env, EnvOpenOptions, WithoutTls};
use rand_arroy::SeedableRng;
use roaring::RoaringBitmap;
use serde::Serialize;

use crate::Error;

/// How many more tree nodes than arroy's default a query inspects. At 4, recall@10 against
/// exact search was 1.0 on 5,000 simulator pictures with the lookup's p99 at 8.7 ms; at 16
/// the whole query's p50 was ~7 ms higher (`shopstream bench ml --images-only --images 5000`).
const OVERSAMPLING: usize = 4;

/// One indexed image.
#[derive(Debug, Clone)]
pub struct Item {
    pub image: String,
    pub product: String,
    pub category: String,
    /// L2-normalised embedding.
    pub vector: Vec<f32>,
}

/// A product found by image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub product: String,
    pub category: String,
    /// The product image that matched best.
    pub image: String,
    /// Cosine similarity of that image to the query.
    pub similarity: f32,
}

pub struct ImageIndex {
    dir: PathBuf,
    env: Option<Env<WithoutTls>>,
    db: arroy::Database<'static, Cosine>,
    items: Vec<Item>,
    by_category: HashMap<String, RoaringBitmap>,
}

impl std::fmt::Debug for ImageIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageIndex")
            .field("images", &self.items.len())
            .finish()
    }
}

impl Drop for ImageIndex {
    fn drop(&mut self) {
        if let Some(env) = self.env.take() {
            drop(env);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl ImageIndex {
    /// Builds the index in a new directory under `root`.
    pub fn build(
        root: &Path,
        items: Vec<Item>,
        on_item: &mut dyn FnMut(usize, usize),
    ) -> Result<ImageIndex, Error> {
        let dim = items
            .first()
            .map_or(crate::vision::effnet::FEATURES, |i| i.vector.len());
        if let Some(bad) = items.iter().find(|i| i.vector.len() != dim) {
            return Err(Error::input(format!(
                "image {} has a {}-wide vector, the others {dim}",
                bad.image,
                bad.vector.len()
            )));
        }
        let dir = root.join(format!("images-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        // SAFETY: the directory is new and private to this index; nothing else opens it.
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(1 << 30)
                .max_dbs(1)
                .open(&dir)?
        };
        let wtxn = env.write_txn()?;
        let db = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                let db = dbo.create_database(wtxn, Some("images"))?;
                Ok(CommitOrAbort::<_, ()>::Commit(db))
            })?
            .unwrap_commit();
        let mut wtxn = env.write_txn()?;
        let writer = Writer::<Cosine>::new(db, 0, dim);
        let mut by_category: HashMap<String, RoaringBitmap> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            writer.add_item(&mut wtxn, i as u32, &item.vector)?;
            by_category
                .entry(item.category.clone())
                .or_default()
                .insert(i as u32);
            if i % 100 == 0 || i + 1 == items.len() {
                on_item(i + 1, items.len());
            }
        }
        let mut rng = rand_arroy::rngs::StdRng::seed_from_u64(11);
        writer.builder(&mut rng).build(&mut wtxn)?;
        wtxn.commit()?;
        Ok(ImageIndex {
            dir,
            env: Some(env),
            db,
            items,
            by_category,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    fn env(&self) -> Result<&Env<WithoutTls>, Error> {
        self.env
            .as_ref()
            .ok_or_else(|| Error::Index("the image index is closed".into()))
    }

    fn candidates(&self, category: Option<&str>, exclude: Option<&str>) -> RoaringBitmap {
        let mut c = match category {
            Some(cat) => self.by_category.get(cat).cloned().unwrap_or_default(),
            None => (0..self.items.len() as u32).collect(),
        };
        if let Some(p) = exclude {
            for (i, item) in self.items.iter().enumerate() {
                if item.product == p {
                    c.remove(i as u32);
                }
            }
        }
        c
    }

    /// Best image per product, in order, at most `k` products.
    fn products(&self, hits: impl IntoIterator<Item = (u32, f32)>, k: usize) -> Vec<Hit> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, sim) in hits {
            let item = &self.items[i as usize];
            if seen.insert(item.product.clone()) {
                out.push(Hit {
                    product: item.product.clone(),
                    category: item.category.clone(),
                    image: item.image.clone(),
                    similarity: sim,
                });
                if out.len() == k {
                    break;
                }
            }
        }
        out
    }

    /// The `k` products whose images are nearest to `query` (through the arroy index).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        category: Option<&str>,
        exclude_product: Option<&str>,
    ) -> Result<Vec<Hit>, Error> {
        let candidates = self.candidates(category, exclude_product);
        if candidates.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let env = self.env()?;
        let rtxn = env.read_txn()?;
        let reader = Reader::<Cosine>::open(&rtxn, 0, self.db)?;
        // Products may have several images: ask for more, keep the best of each.
        let mut q = reader.nns(k * 3);
        q.candidates(&candidates).oversampling(
            std::num::NonZeroUsize::new(OVERSAMPLING).unwrap_or(std::num::NonZeroUsize::MIN),
        );
        let hits = q.by_vector(&rtxn, query)?;
        // arroy's cosine distance is (1 − cos) / 2.
        Ok(self.products(hits.into_iter().map(|(i, d)| (i, 1.0 - 2.0 * d)), k))
    }

    /// The same query answered by comparing with every image (to measure the index's recall).
    pub fn exact(
        &self,
        query: &[f32],
        k: usize,
        category: Option<&str>,
        exclude_product: Option<&str>,
    ) -> Vec<Hit> {
        let candidates = self.candidates(category, exclude_product);
        let mut all: Vec<(u32, f32)> = candidates
            .iter()
            .map(|i| {
                let v = &self.items[i as usize].vector;
                (i, v.iter().zip(query).map(|(a, b)| a * b).sum())
            })
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        self.products(all, k)
    }
}
