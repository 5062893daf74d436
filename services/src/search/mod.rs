//! Product search for the storefront: `GET /v1/search?q=` (full-text and semantic results
//! blended, with category facets) and `GET /v1/search/suggest?q=` (autocomplete). The index
//! is rebuilt from the catalogue in PostgreSQL when products change, embeddings by the
//! all-MiniLM-L6-v2 encoder; without the encoder, search is full-text only and says so.
//! `POST /v1/search/image` finds products by picture ([`images`]).

pub mod images;
pub mod routes;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ml::search::{Doc, SearchIndex};
use ml::text::TextEncoder;
use sqlx::PgPool;

pub use routes::routes;

/// The encoder and the current index.
pub struct Search {
    model_dir: PathBuf,
    encoder: RwLock<Option<Arc<TextEncoder>>>,
    /// (catalogue fingerprint, index).
    index: RwLock<Option<(String, Arc<SearchIndex>)>>,
    load_error: RwLock<Option<String>>,
}

impl Search {
    pub fn new(model_dir: impl Into<PathBuf>) -> Search {
        Search {
            model_dir: model_dir.into(),
            encoder: RwLock::new(None),
            index: RwLock::new(None),
            load_error: RwLock::new(None),
        }
    }

    pub fn encoder(&self) -> Option<Arc<TextEncoder>> {
        self.encoder.read().ok().and_then(|e| e.clone())
    }

    pub fn index(&self) -> Option<Arc<SearchIndex>> {
        self.index
            .read()
            .ok()
            .and_then(|i| i.as_ref().map(|(_, i)| i.clone()))
    }

    /// Why semantic search is off, if it is.
    pub fn load_error(&self) -> Option<String> {
        self.load_error.read().ok().and_then(|e| e.clone())
    }

    /// Loads the encoder once, and rebuilds the index when the catalogue changed.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), String> {
        if self.encoder().is_none() && self.load_error().is_none() {
            let dir = self.model_dir.clone();
            match tokio::task::spawn_blocking(move || TextEncoder::load(&dir))
                .await
                .map_err(|e| e.to_string())?
            {
                Ok(e) => {
                    if let Ok(mut slot) = self.encoder.write() {
                        *slot = Some(Arc::new(e));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "semantic search off: the text model did not load");
                    if let Ok(mut slot) = self.load_error.write() {
                        *slot = Some(e.to_string());
                    }
                }
            }
        }
        let (count, latest): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
            "SELECT count(*), max(updated_at) FROM catalog.products WHERE status = 'active'",
        )
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
        let fingerprint = format!("{count}/{latest:?}/{}", self.encoder().is_some());
        let current = self
            .index
            .read()
            .ok()
            .and_then(|i| i.as_ref().map(|(f, _)| f.clone()));
        if current.as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
        }
        let rows: Vec<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT id::text, names->>'en', descriptions->>'en', category
             FROM catalog.products WHERE status = 'active' ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
        let docs: Vec<Doc> = rows
            .into_iter()
            .map(|(id, title, description, category)| Doc {
                id,
                title: title.unwrap_or_default(),
                description: description.unwrap_or_default(),
                category,
            })
            .collect();
        let encoder = self.encoder();
        let previous = self.index();
        let n = docs.len();
        let index = tokio::task::spawn_blocking(move || {
            SearchIndex::rebuild(
                docs,
                encoder.as_deref(),
                previous.as_deref(),
                &mut |_, _| {},
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        tracing::info!(
            products = n,
            semantic = index.semantic(),
            "search index rebuilt"
        );
        if let Ok(mut slot) = self.index.write() {
            *slot = Some((fingerprint, Arc::new(index)));
        }
        Ok(())
    }
}
