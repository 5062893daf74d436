//! Product search for the storefront: `GET /v1/search?q=` (full-text and semantic results
//! blended, with category facets) and `GET /v1/search/suggest?q=` (autocomplete). The index
//! is rebuilt from the catalogue in PostgreSQL when products change, embeddings by the
//! all-MiniLM-L6-v2 encoder; without the encoder, search is full-text only and says so.
//! `POST /v1/search/image` finds products by picture ([`images`]).

pub mod images;
pub mod routes;
mod slot;

use std::path::PathBuf;
use std::sync::Arc;

use ml::search::{Doc, SearchIndex};
use ml::text::TextEncoder;
use sqlx::PgPool;

pub use routes::routes;
use slot::{IndexSlot, ModelSlot};

/// The encoder and the current index.
pub struct Search {
    encoder: ModelSlot<TextEncoder>,
    index: IndexSlot<SearchIndex>,
}

impl Search {
    pub fn new(model_dir: impl Into<PathBuf>) -> Search {
        Search {
            encoder: ModelSlot::new(model_dir, "semantic search"),
            index: IndexSlot::default(),
        }
    }

    pub fn encoder(&self) -> Option<Arc<TextEncoder>> {
        self.encoder.get()
    }

    pub fn index(&self) -> Option<Arc<SearchIndex>> {
        self.index.get()
    }

    /// Why semantic search is off, if it is.
    pub fn load_error(&self) -> Option<String> {
        self.encoder.error()
    }

    /// Loads the encoder once, and rebuilds the index when the catalogue changed.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), String> {
        self.encoder.load_once(TextEncoder::load).await?;
        let (count, latest): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
            "SELECT count(*), max(updated_at) FROM catalog.products WHERE status = 'active'",
        )
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
        let fingerprint = format!("{count}/{latest:?}/{}", self.encoder().is_some());
        if self.index.is_current(&fingerprint) {
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
        self.index.set(fingerprint, index);
        Ok(())
    }
}
