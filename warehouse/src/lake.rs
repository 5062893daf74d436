//! The lake on disk: one Delta table per (layer, name) under the warehouse directory, e.g.
//! `<dir>/bronze/orders`, `<dir>/gold/fact_orders`. Creates tables on first use and opens
//! them by name, so the loader, the model builds and the SQL servers agree on the layout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::datatypes::Schema;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError, ensure_table_uri};

/// A layer of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Raw events per family, as they arrived.
    Bronze,
    /// Typed, deduplicated.
    Silver,
    /// Curated models for analysts.
    Gold,
    /// Older partitions, compacted.
    Cold,
}

impl Layer {
    pub const ALL: [Layer; 4] = [Layer::Bronze, Layer::Silver, Layer::Gold, Layer::Cold];

    pub fn name(self) -> &'static str {
        match self {
            Layer::Bronze => "bronze",
            Layer::Silver => "silver",
            Layer::Gold => "gold",
            Layer::Cold => "cold",
        }
    }
}

/// The warehouse directory.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

impl Lake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Lake { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, layer: Layer, name: &str) -> PathBuf {
        self.root.join(layer.name()).join(name)
    }

    /// Whether the table has been created (has a Delta log).
    pub fn exists(&self, layer: Layer, name: &str) -> bool {
        self.path(layer, name).join("_delta_log").is_dir()
    }

    /// Opens an existing table at its latest version.
    pub async fn open(&self, layer: Layer, name: &str) -> Result<DeltaTable, DeltaTableError> {
        let url = ensure_table_uri(self.path(layer, name).to_string_lossy())?;
        deltalake::open_table(url).await
    }

    /// Opens the table, creating it empty with `schema` and `partitions` if it does not exist.
    pub async fn open_or_create(
        &self,
        layer: Layer,
        name: &str,
        schema: &Arc<Schema>,
        partitions: &[&str],
    ) -> Result<DeltaTable, DeltaTableError> {
        if self.exists(layer, name) {
            return self.open(layer, name).await;
        }
        let path = self.path(layer, name);
        std::fs::create_dir_all(&path).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let url = ensure_table_uri(path.to_string_lossy())?;
        let table = DeltaTable::try_from_url(url).await?;
        let kernel: StructType = schema.as_ref().try_into_kernel()?;
        let created = table
            .create()
            .with_table_name(name)
            .with_columns(kernel.fields().cloned())
            .with_partition_columns(partitions.iter().map(|p| p.to_string()))
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(t) => Ok(t),
            // Another process created it first.
            Err(_) if self.exists(layer, name) => self.open(layer, name).await,
            Err(e) => Err(e),
        }
    }

    /// Every table of a layer that exists, by name.
    pub fn tables(&self, layer: Layer) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.root.join(layer.name())) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| self.exists(layer, n))
            .collect();
        names.sort();
        names
    }
}
