//! ML: recommendation models (iALS with popularity and item-kNN baselines), their
//! leave-last-out evaluation, arroy nearest-neighbour indexes, the fraud model (logistic
//! regression), image embeddings (EfficientNet-Lite0), and the versioned model registry serving reads from. HTTP routes live in `services`; this crate has no server.

pub mod fraud;
pub mod progress;
pub mod recs;
pub mod registry;
pub mod search;
pub mod text;
pub mod vision;

/// What can go wrong in training, evaluation, the registry or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the caller: a malformed file, an unknown version, empty data.
    #[error("{0}")]
    Input(String),
    /// The disk: a file that cannot be read or written.
    #[error("{0}")]
    Io(String),
    /// A model file whose hash does not match its metadata.
    #[error("{0}")]
    Integrity(String),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("nearest-neighbour index: {0}")]
    Index(String),
}

impl Error {
    pub fn input(msg: impl Into<String>) -> Error {
        Error::Input(msg.into())
    }
}

impl From<arroy::Error> for Error {
    fn from(e: arroy::Error) -> Self {
        Error::Index(e.to_string())
    }
}

impl From<heed::Error> for Error {
    fn from(e: heed::Error) -> Self {
        Error::Index(e.to_string())
    }
}
