//! Product pictures for image search: small PNGs rendered from the product's own features, so
//! that visual similarity means something. The colour fills the picture, the pattern is
//! drawn over it, and the category decides the silhouette in the middle; a little noise
//! from the seed keeps two products of the same kind from being identical.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::simulate::world::Product;

pub const SIZE: u32 = 128;

fn rgb(colour: &str) -> [u8; 3] {
    match colour {
        "red" => [200, 30, 40],
        "blue" => [30, 70, 200],
        "green" => [40, 160, 60],
        "black" => [25, 25, 25],
        "white" => [235, 235, 235],
        "yellow" => [235, 200, 30],
        "purple" => [130, 40, 160],
        _ => [240, 130, 20], // orange
    }
}

/// Contrast colour for patterns and silhouettes.
fn ink(base: [u8; 3]) -> [u8; 3] {
    let lum = u32::from(base[0]) * 3 + u32::from(base[1]) * 6 + u32::from(base[2]);
    if lum > 1200 {
        [40, 40, 40]
    } else {
        [245, 245, 245]
    }
}

fn in_pattern(pattern: &str, x: u32, y: u32) -> bool {
    match pattern {
        "striped" => (y / 8).is_multiple_of(2),
        "checked" => ((x / 16) + (y / 16)).is_multiple_of(2),
        "dotted" => {
            let (dx, dy) = ((x % 16) as i32 - 8, (y % 16) as i32 - 8);
            dx * dx + dy * dy <= 9
        }
        "floral" => {
            let (dx, dy) = ((x % 32) as i32 - 16, (y % 32) as i32 - 16);
            let r2 = dx * dx + dy * dy;
            (20..=64).contains(&r2) && (dx.abs() < 3 || dy.abs() < 3)
        }
        _ => false, // plain
    }
}

/// The category's silhouette, centred.
fn in_shape(category: &str, x: u32, y: u32) -> bool {
    let (cx, cy) = (x as i32 - 64, y as i32 - 64);
    match category {
        "apparel" => {
            (cy > -30 && cy < 40 && cx.abs() < 25) || (cy > -30 && cy < -10 && cx.abs() < 45)
        }
        "shoes" => cy > 0 && cy < 25 && cx > -40 && cx < 40 && (cx < 10 || cy > 12),
        "electronics" => cx.abs() < 40 && cy.abs() < 28 && !(cx.abs() < 34 && cy.abs() < 22),
        "home" => {
            cy > -5 && cy < 35 && cx.abs() < 35 || (cy <= -5 && cy > -40 && cx.abs() < (cy + 40))
        }
        "toys" => cx * cx + cy * cy < 900,
        "books" => cx.abs() < 25 && cy.abs() < 35,
        "beauty" => (cx.abs() < 10 && cy > -35 && cy < 35) || (cx.abs() < 18 && cy > 5 && cy < 35),
        "sports" => (cx * cx + cy * cy) < 1600 && (cx * cx + cy * cy) > 900,
        "garden" => (cx.abs() < 4 && cy > 0 && cy < 40) || (cx * cx + (cy + 10) * (cy + 10) < 500),
        _ => (cx - cy).abs() < 8 && cx.abs() < 35, // grocery: a diagonal
    }
}

/// The RGB pixels of a product's picture.
pub fn render(product: &Product, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ product.id.as_u128() as u64);
    let base = rgb(product.colour);
    let ink = ink(base);
    let mut px = Vec::with_capacity((SIZE * SIZE * 3) as usize);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let c = if in_shape(product.category, x, y) {
                ink
            } else if in_pattern(product.pattern, x, y) {
                [
                    (base[0] / 2).saturating_add(ink[0] / 2),
                    (base[1] / 2).saturating_add(ink[1] / 2),
                    (base[2] / 2).saturating_add(ink[2] / 2),
                ]
            } else {
                base
            };
            for ch in c {
                let noise: i16 = rng.random_range(-6..=6);
                px.push((i16::from(ch) + noise).clamp(0, 255) as u8);
            }
        }
    }
    px
}

/// PNG bytes of a product's picture.
pub fn png(product: &Product, seed: u64) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, SIZE, SIZE);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(&render(product, seed))?;
    w.finish()?;
    Ok(out)
}

/// Writes `<dir>/<product id>.png` for every product; returns the files written.
pub fn write_all(
    products: &[Product],
    seed: u64,
    dir: &Path,
    mut progress: impl FnMut(usize),
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::with_capacity(products.len());
    for (i, p) in products.iter().enumerate() {
        let bytes = png(p, seed).map_err(std::io::Error::other)?;
        let path = dir.join(format!("{}.png", p.id));
        std::fs::write(&path, bytes)?;
        written.push(path);
        progress(i + 1);
    }
    Ok(written)
}
