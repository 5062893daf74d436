//! The image model against reference outputs computed independently (float64 numpy straight
//! from the package's torch file: `scripts/reference/efficientnet.py`), the converter's
//! refusals, and the arroy image index over the simulator's product pictures.

use candle_core::{Device, Tensor};
use ml::vision::index::{ImageIndex, Item};
use ml::vision::{self, ImageEncoder, Rejected, torch_legacy};

fn model_dir() -> std::path::PathBuf {
    std::env::var_os("SHOPSTREAM_IMAGE_MODEL_DIR")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/shopstream/models/efficientnet-lite0")
        })
}

fn encoder() -> ImageEncoder {
    ImageEncoder::load(&model_dir()).expect("the image model (scripts/test.sh fetches it)")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ml-vision-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The fixture's synthetic input (see the script's INPUT_TEXT).
fn reference_input() -> Tensor {
    let mut x = vec![0f32; 3 * 224 * 224];
    for c in 0..3 {
        for h in 0..224 {
            for w in 0..224 {
                let (cf, hf, wf) = (c as f64, h as f64, w as f64);
                let v = 2.0 * (0.05 * hf + 0.07 * wf + 1.3 * cf).sin() * (0.031 * (hf - wf)).cos();
                x[(c * 224 + h) * 224 + w] = v as f32;
            }
        }
    }
    Tensor::from_vec(x, (1, 3, 224, 224), &Device::Cpu).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn converted_model_reproduces_the_reference_within_1e_4() {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/efficientnet_lite0.json")).unwrap();
    let enc = encoder();
    assert_eq!(enc.dim, 1280);
    let x = reference_input();
    let stem: Vec<f32> = enc
        .net()
        .stem(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let d = worst(&stem[..8], &floats(&reference["stem_first8"]));
    assert!(d < 1e-4, "stem differs by {d}");

    let features = enc.net().features(&x).unwrap();
    let got: Vec<f32> = features.flatten_all().unwrap().to_vec1().unwrap();
    let want = floats(&reference["features"]);
    let d = worst(&got, &want);
    assert!(d < 1e-4, "pooled features differ by {d}");
    assert!(
        want.iter().filter(|v| **v > 0.01).count() > 100,
        "a fixture worth testing"
    );

    let logits: Vec<f32> = enc
        .net()
        .classify(&features)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(logits.len(), 1000);
    let d = worst(&logits[..8], &floats(&reference["logits_first8"]));
    assert!(d < 1e-4, "logits differ by {d}");
    let mut order: Vec<usize> = (0..1000).collect();
    order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    for (rank, pair) in reference["logits_top5"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let class = pair[0].as_u64().unwrap() as usize;
        let logit = pair[1].as_f64().unwrap() as f32;
        assert_eq!(order[rank], class, "top-{} class", rank + 1);
        assert!(
            (logits[class] - logit).abs() < 1e-4,
            "logit of class {class}"
        );
    }

    // The embedding is the same features, L2-normalised.
    let mut norm = want.clone();
    vision::normalise(&mut norm);
    let input: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let v = enc.embed_input(input).unwrap();
    assert!(worst(&v, &norm) < 1e-5);
}

#[test]
fn the_legacy_reader_reads_every_tensor_and_refuses_damaged_files() {
    let pth = model_dir().join(vision::PTH_FILE);
    let tensors = torch_legacy::read(&pth).unwrap();
    assert_eq!(tensors.len(), 296);
    let values: usize = tensors.iter().map(|(_, t)| t.elem_count()).sum();
    assert_eq!(values, 4_694_073, "every value of the state dict");
    let stem = &tensors
        .iter()
        .find(|(n, _)| n == "_conv_stem.weight")
        .unwrap()
        .1;
    assert_eq!(stem.dims(), &[32, 3, 3, 3]);

    let dir = scratch("damaged");
    let bytes = std::fs::read(&pth).unwrap();
    let cut = dir.join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let e = torch_legacy::read(&cut).unwrap_err().to_string();
    assert!(e.contains("cut short"), "{e}");
    let zip = dir.join("zip.pth");
    std::fs::write(&zip, b"PK\x03\x04 a zip-format checkpoint").unwrap();
    let e = torch_legacy::read(&zip).unwrap_err().to_string();
    assert!(e.contains("magic number"), "{e}");

    // The encoder checks the package file's hash before converting it.
    let mut tampered = bytes.clone();
    let at = tampered.len() - 4;
    tampered[at] ^= 0x40;
    std::fs::write(dir.join(vision::PTH_FILE), &tampered).unwrap();
    let e = ImageEncoder::load(&dir).unwrap_err().to_string();
    assert!(e.contains("sha256"), "{e}");
    // And a converted file altered afterwards is refused too.
    let ok = scratch("converted");
    std::fs::copy(&pth, ok.join(vision::PTH_FILE)).unwrap();
    ImageEncoder::load(&ok).unwrap();
    let st = ok.join(vision::SAFETENSORS_FILE);
    let mut conv = std::fs::read(&st).unwrap();
    let at = conv.len() - 8;
    conv[at] ^= 1;
    std::fs::write(&st, conv).unwrap();
    let e = ImageEncoder::load(&ok).unwrap_err().to_string();
    assert!(e.contains("recorded at conversion"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(ok);
}

fn png(w: u32, h: u32, px: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(px(x, y)));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// CRC-32 (IEEE) as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn bad_images_are_rejected_with_the_reason() {
    assert!(matches!(
        vision::decode(b"GIF89a not supported"),
        Err(Rejected::NotAnImage(_))
    ));
    assert!(matches!(vision::decode(b""), Err(Rejected::NotAnImage(_))));
    let mut truncated = png(64, 64, |x, y| [x as u8, y as u8, 0]);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        vision::decode(&truncated),
        Err(Rejected::NotAnImage(_))
    ));
    // A header claiming 20000×20000 pixels is refused before anything is decoded.
    let mut bomb = png(8, 8, |_, _| [1, 2, 3]);
    bomb[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    match vision::decode(&bomb) {
        Err(Rejected::TooLarge(m)) => assert!(m.contains("20000x20000"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A wide image is resized on its short side and centre-cropped.
    let wide = vision::decode(&png(448, 224, |x, _| {
        if !(112..336).contains(&x) {
            [255, 0, 0]
        } else {
            [0, 0, 255]
        }
    }))
    .unwrap();
    let input = vision::preprocess(&wide);
    assert_eq!(input.len(), 3 * 224 * 224);
    // The crop keeps the blue middle: red channel low, blue high everywhere.
    let red = &input[..224 * 224];
    let blue = &input[2 * 224 * 224..];
    assert!(red.iter().all(|v| *v < -0.9) && blue.iter().all(|v| *v > 0.9));
}

#[test]
fn image_search_finds_the_same_kind_of_product() {
    use ingest::simulate::{Generator, SimConfig, images};
    let enc = encoder();
    let g = Generator::new(SimConfig {
        seed: 21,
        products: 80,
        ..SimConfig::default()
    });
    let products = &g.world().products;
    let items: Vec<Item> = products
        .iter()
        .map(|p| {
            let bytes = images::png(p, 21).unwrap();
            Item {
                image: format!("{}-0", p.id),
                product: p.id.to_string(),
                category: p.category.to_string(),
                vector: enc.embed_bytes(&bytes).unwrap().unwrap(),
            }
        })
        .collect();
    let root = scratch("index");
    let index = ImageIndex::build(&root, items.clone(), &mut |_, _| {}).unwrap();
    assert_eq!(index.len(), 80);
    let (mut recall, mut same, mut asked) = (0usize, 0usize, 0usize);
    for item in &items {
        let hits = index
            .search(&item.vector, 10, None, Some(&item.product))
            .unwrap();
        let exact = index.exact(&item.vector, 10, None, Some(&item.product));
        assert_eq!(hits.len(), 10);
        assert!(
            hits.iter().all(|h| h.product != item.product),
            "the query product is left out"
        );
        assert!(
            hits.windows(2)
                .all(|w| w[0].similarity >= w[1].similarity - 1e-6)
        );
        let exact_ids: std::collections::HashSet<_> = exact.iter().map(|h| &h.product).collect();
        recall += hits
            .iter()
            .filter(|h| exact_ids.contains(&h.product))
            .count();
        same += usize::from(hits[0].category == item.category);
        asked += 1;
    }
    let recall = recall as f64 / (asked * 10) as f64;
    let top1_same = same as f64 / asked as f64;
    println!("recall@10 {recall:.3}, top-1 same category {top1_same:.3}");
    assert!(recall > 0.8, "arroy recall@10 vs exact: {recall}");
    // Ten categories: chance is ~0.1. A pretrained ImageNet model sees the silhouettes.
    assert!(top1_same > 0.5, "top hit shares the category: {top1_same}");

    // The product's own picture finds the product first; the same picture re-encoded as a
    // JPEG (quality 75: the flat synthetic colours shift a lot) keeps it in the top 3.
    let p = &products[3];
    let png_bytes = images::png(p, 21).unwrap();
    let v = enc.embed_bytes(&png_bytes).unwrap().unwrap();
    let hits = index.search(&v, 3, None, None).unwrap();
    assert_eq!(hits[0].product, p.id.to_string());
    assert!(hits[0].similarity > 0.999, "{:?}", hits[0]);
    let img = image::load_from_memory(&png_bytes).unwrap();
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let v = enc.embed_bytes(jpeg.get_ref()).unwrap().unwrap();
    let hits = index.search(&v, 3, None, None).unwrap();
    assert!(
        hits.iter().any(|h| h.product == p.id.to_string()),
        "{hits:?} for a JPEG of {}",
        p.id
    );
    // A category filter keeps to that category.
    let hits = index.search(&v, 5, Some("books"), None).unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.category == "books"));
    // Dropping the index removes its files.
    drop(index);
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(root);
}
