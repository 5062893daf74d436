//! What the search indexes share: a model loaded once from its directory (remembering why it
//! did not load), and an index kept with the fingerprint of the catalogue it was built from.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A model loaded on first use; a failed load is remembered, not retried.
pub struct ModelSlot<E> {
    dir: PathBuf,
    /// What goes off without the model, for the log.
    what: &'static str,
    model: RwLock<Option<Arc<E>>>,
    error: RwLock<Option<String>>,
}

impl<E: Send + Sync + 'static> ModelSlot<E> {
    pub fn new(dir: impl Into<PathBuf>, what: &'static str) -> Self {
        ModelSlot {
            dir: dir.into(),
            what,
            model: RwLock::new(None),
            error: RwLock::new(None),
        }
    }

    pub fn get(&self) -> Option<Arc<E>> {
        self.model.read().ok().and_then(|m| m.clone())
    }

    /// Why the model is not loaded, if it failed.
    pub fn error(&self) -> Option<String> {
        self.error.read().ok().and_then(|e| e.clone())
    }

    /// Loads the model off the async workers unless loaded or failed already.
    pub async fn load_once(&self, load: fn(&Path) -> Result<E, ml::Error>) -> Result<(), String> {
        if self.get().is_some() || self.error().is_some() {
            return Ok(());
        }
        let dir = self.dir.clone();
        match tokio::task::spawn_blocking(move || load(&dir))
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(m) => {
                if let Ok(mut slot) = self.model.write() {
                    *slot = Some(Arc::new(m));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "{} off: its model did not load", self.what);
                if let Ok(mut slot) = self.error.write() {
                    *slot = Some(e.to_string());
                }
            }
        }
        Ok(())
    }
}

/// The current index and the fingerprint of what it was built from.
pub struct IndexSlot<I> {
    current: RwLock<Option<(String, Arc<I>)>>,
}

impl<I> Default for IndexSlot<I> {
    fn default() -> Self {
        IndexSlot {
            current: RwLock::new(None),
        }
    }
}

impl<I> IndexSlot<I> {
    pub fn get(&self) -> Option<Arc<I>> {
        self.current
            .read()
            .ok()
            .and_then(|i| i.as_ref().map(|(_, i)| i.clone()))
    }

    /// Whether the index was built from exactly this.
    pub fn is_current(&self, fingerprint: &str) -> bool {
        self.current
            .read()
            .ok()
            .is_some_and(|i| i.as_ref().is_some_and(|(f, _)| f == fingerprint))
    }

    pub fn set(&self, fingerprint: String, index: I) {
        if let Ok(mut slot) = self.current.write() {
            *slot = Some((fingerprint, Arc::new(index)));
        }
    }
}
