//! Visual product search: `POST /v1/search/image` with a picture finds products whose images
//! look like it. Every active product's images (uploaded through the catalogue, stored under
//! the data dir) are embedded by EfficientNet-Lite0 and kept in an arroy cosine index,
//! rebuilt when images or products change; embeddings of unchanged images are reused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ml::vision::ImageEncoder;
use ml::vision::index::{ImageIndex, Item};
use sqlx::PgPool;
use uuid::Uuid;

use super::slot::{IndexSlot, ModelSlot};

/// The encoder, the current index and the embeddings computed so far.
pub struct ImageSearch {
    data_dir: PathBuf,
    encoder: ModelSlot<ImageEncoder>,
    index: IndexSlot<ImageIndex>,
    /// Embedding per image id.
    embeddings: RwLock<HashMap<Uuid, Arc<Vec<f32>>>>,
}

fn ext_of(content_type: &str) -> &'static str {
    if content_type == "image/jpeg" {
        "jpg"
    } else {
        "png"
    }
}

impl ImageSearch {
    pub fn new(model_dir: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> ImageSearch {
        ImageSearch {
            data_dir: data_dir.into(),
            encoder: ModelSlot::new(model_dir, "image search"),
            index: IndexSlot::default(),
            embeddings: RwLock::new(HashMap::new()),
        }
    }

    pub fn encoder(&self) -> Option<Arc<ImageEncoder>> {
        self.encoder.get()
    }

    pub fn index(&self) -> Option<Arc<ImageIndex>> {
        self.index.get()
    }

    /// Why image search is off, if it is.
    pub fn load_error(&self) -> Option<String> {
        self.encoder.error()
    }

    /// Loads the encoder once, and rebuilds the index when images or products changed.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), String> {
        self.encoder.load_once(ImageEncoder::load).await?;
        let Some(encoder) = self.encoder() else {
            return Ok(());
        };
        let (count, ids, changed): (i64, Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as(
                "SELECT count(*), md5(string_agg(i.id::text, ',' ORDER BY i.id)), max(p.updated_at)
             FROM catalog.images i JOIN catalog.products p ON p.id = i.product_id
             WHERE p.status = 'active'",
            )
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?;
        let fingerprint = format!("{count}/{ids:?}/{changed:?}");
        if self.index.is_current(&fingerprint) {
            return Ok(());
        }
        let rows: Vec<(Uuid, Uuid, String, String)> = sqlx::query_as(
            "SELECT i.id, i.product_id, i.content_type, p.category
             FROM catalog.images i JOIN catalog.products p ON p.id = i.product_id
             WHERE p.status = 'active' ORDER BY i.id",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
        let known = self
            .embeddings
            .read()
            .map(|e| e.clone())
            .unwrap_or_default();
        let data_dir = self.data_dir.clone();
        let root = self.data_dir.join("image-index");
        let built = tokio::task::spawn_blocking(move || {
            let mut fresh = HashMap::new();
            let mut items = Vec::with_capacity(rows.len());
            let mut progress = ml::progress::Progress::new("image index", rows.len() as u64);
            for (n, (image, product, content_type, category)) in rows.into_iter().enumerate() {
                let vector = match known.get(&image) {
                    Some(v) => v.clone(),
                    None => {
                        let path = data_dir
                            .join("images")
                            .join(product.to_string())
                            .join(format!("{image}.{}", ext_of(&content_type)));
                        let embedded = std::fs::read(&path)
                            .map_err(|e| e.to_string())
                            .and_then(|b| match encoder.embed_bytes(&b) {
                                Ok(Ok(v)) => Ok(v),
                                Ok(Err(r)) => Err(r.to_string()),
                                Err(e) => Err(e.to_string()),
                            });
                        match embedded {
                            Ok(v) => Arc::new(v),
                            Err(e) => {
                                // One unreadable file must not take image search down.
                                tracing::warn!(%image, path = %path.display(), error = %e, "image left out of the index");
                                continue;
                            }
                        }
                    }
                };
                fresh.insert(image, vector.clone());
                items.push(Item {
                    image: image.to_string(),
                    product: product.to_string(),
                    category,
                    vector: vector.as_ref().clone(),
                });
                progress.set(n as u64 + 1);
            }
            progress.finish();
            let index = ImageIndex::build(&root, items, &mut |_, _| {});
            index.map(|i| (i, fresh))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let (index, fresh) = built;
        tracing::info!(images = index.len(), "image search index rebuilt");
        if let Ok(mut e) = self.embeddings.write() {
            *e = fresh;
        }
        self.index.set(fingerprint, index);
        Ok(())
    }
}
