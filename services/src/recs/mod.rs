//! Recommendations for the storefront: `GET /v1/recommendations/users/{id}` and
//! `GET /v1/products/{id}/similar`, served from the promoted `recs` model of the registry.
//! [`Models`] holds the loaded model; [`watch`] swaps in a newly promoted version (loaded
//! beside the old one, then one pointer swap, so no request is dropped or sees half a model)
//! and refreshes which items are in stock, and keeps the search index current.

pub mod routes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ml::recs::model::Recommender;
use ml::registry::Registry;
use roaring::RoaringBitmap;
use sqlx::PgPool;

pub use routes::routes;

/// A model and the stock snapshot numbered like it.
pub struct Serving {
    pub model: Arc<Recommender>,
    /// Items (model numbering) with stock available.
    pub in_stock: RoaringBitmap,
}

/// The registry and what is being served from it, and product search.
pub struct Models {
    pub registry: Registry,
    current: RwLock<Option<Arc<Serving>>>,
    pub search: crate::search::Search,
    pub images: crate::search::images::ImageSearch,
}

impl Models {
    /// `dir` is the registry, `text_model` the sentence encoder's directory, `image_model`
    /// the image model's, `data_dir` where product images are stored.
    pub fn new(
        dir: impl Into<PathBuf>,
        text_model: impl Into<PathBuf>,
        image_model: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
    ) -> Models {
        Models {
            registry: Registry::new(dir.into()),
            current: RwLock::new(None),
            search: crate::search::Search::new(text_model),
            images: crate::search::images::ImageSearch::new(image_model, data_dir),
        }
    }

    /// What requests use now (None until a model is promoted and loaded).
    pub fn current(&self) -> Option<Arc<Serving>> {
        self.current.read().map(|c| c.clone()).unwrap_or_default()
    }

    fn set(&self, s: Serving) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(Arc::new(s));
        }
    }

    /// Loads the promoted version if it is not the one served, and refreshes stock.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), String> {
        let promoted = self
            .registry
            .promoted(ml::recs::pipeline::KIND)
            .map_err(|e| e.to_string())?;
        let current = self.current();
        let model = match (&promoted, &current) {
            (None, _) => return Ok(()),
            (Some(v), Some(c)) if &c.model.version == v => c.model.clone(),
            (Some(v), _) => {
                let dir = self.registry.dir(ml::recs::pipeline::KIND, v);
                let version = v.clone();
                let mut model =
                    tokio::task::spawn_blocking(move || Recommender::load(&dir, &version))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("loading recs {v}: {e}"))?;
                let catalog = catalog(pool).await.map_err(|e| e.to_string())?;
                model.fill_categories(|item| catalog.get(item).map(|c| c.0.clone()));
                tracing::info!(version = %v, users = model.users(), items = model.items(), "serving recommendation model");
                Arc::new(model)
            }
        };
        let in_stock = stock(pool, &model).await.map_err(|e| e.to_string())?;
        self.set(Serving { model, in_stock });
        Ok(())
    }
}

/// Product id → (category, has stock), from the catalog and inventory.
async fn catalog(pool: &PgPool) -> Result<HashMap<String, (String, bool)>, sqlx::Error> {
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT p.id::text, p.category, coalesce(s.on_hand > s.reserved, false)
         FROM catalog.products p LEFT JOIN inventory.stock s ON s.sku = p.sku
         WHERE p.status = 'active'",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id, c, s)| (id, (c, s))).collect())
}

async fn stock(pool: &PgPool, model: &Recommender) -> Result<RoaringBitmap, sqlx::Error> {
    Ok(catalog(pool)
        .await?
        .into_iter()
        .filter(|(_, (_, s))| *s)
        .filter_map(|(id, _)| model.item_number(&id))
        .collect())
}

/// Follows the registry every `every` until `stop`: a new promotion is served within one
/// interval, stock within one interval of changing.
pub async fn watch(
    models: Arc<Models>,
    pool: PgPool,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        if let Err(e) = models.refresh(&pool).await {
            tracing::warn!(error = %e, "refreshing the recommendation model failed");
        }
        if let Err(e) = models.search.refresh(&pool).await {
            tracing::warn!(error = %e, "refreshing the search index failed");
        }
        if let Err(e) = models.images.refresh(&pool).await {
            tracing::warn!(error = %e, "refreshing the image search index failed");
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
