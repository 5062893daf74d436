//! The sentence encoder against reference embeddings computed independently (numpy, from the
//! same PyPI package: `scripts/reference/minilm.py`), and search over a small catalogue.

use ml::search::{Doc, Matched, SearchIndex};
use ml::text::TextEncoder;

fn model_dir() -> std::path::PathBuf {
    std::env::var_os("SHOPSTREAM_TEXT_MODEL_DIR")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/shopstream/models/all-minilm-l6-v2")
        })
}

fn encoder() -> TextEncoder {
    TextEncoder::load(&model_dir()).expect("the text model (scripts/test.sh fetches it)")
}

#[test]
fn embeddings_match_the_reference_within_1e_4() {
    let reference: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../fixtures/minilm.json")).unwrap();
    let enc = encoder();
    assert_eq!(enc.dim, 384);
    let texts: Vec<&str> = reference
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    // One at a time and as a padded batch: the same vectors.
    let batch = enc.embed(&texts).unwrap();
    for (r, b) in reference.iter().zip(&batch) {
        let text = r["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(r["ids"].clone()).unwrap();
        assert_eq!(enc.token_ids(text).unwrap(), ids, "{text}");
        let want: Vec<f32> = serde_json::from_value(r["embedding"].clone()).unwrap();
        let one = enc.embed(&[text]).unwrap().remove(0);
        for (got, label) in [(&one, "single"), (b, "batch")] {
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{label} {text}: max difference {worst}");
        }
    }
}

#[test]
fn a_tampered_model_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("minilm-bad-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("model.safetensors"), b"not a model").unwrap();
    let e = TextEncoder::load(&dir).unwrap_err().to_string();
    assert!(e.contains("sha256"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = TextEncoder::load(std::path::Path::new("/nonexistent"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ensure_text_model"), "{e}");
}

fn doc(id: &str, title: &str, description: &str, category: &str) -> Doc {
    Doc {
        id: id.into(),
        title: title.into(),
        description: description.into(),
        category: category.into(),
    }
}

#[test]
fn search_blends_text_and_meaning_with_facets_and_suggestions() {
    let enc = encoder();
    let docs = vec![
        doc(
            "1",
            "Wireless earbuds",
            "Bluetooth in-ear audio with a charging case",
            "electronics",
        ),
        doc(
            "2",
            "Garden hose",
            "Thirty metres of flexible green hose",
            "garden",
        ),
        doc(
            "3",
            "Running shoes",
            "Lightweight trainers for road running",
            "shoes",
        ),
        doc(
            "4",
            "Paperback novel",
            "A mystery story set in Vienna",
            "books",
        ),
        doc(
            "5",
            "Garden gloves",
            "Thorn-proof gloves for pruning roses",
            "garden",
        ),
        doc("6", "Leather boots", "Waterproof hiking boots", "shoes"),
    ];
    let index = SearchIndex::build(docs, Some(&enc), &mut |_, _| {}).unwrap();
    let q = |text: &str, cat: Option<&str>| {
        let v = enc.embed(&[text]).unwrap().remove(0);
        index.search(text, Some(&v), cat, 3)
    };
    // No word in common: found by meaning alone.
    let r = q("headphones", None);
    assert_eq!(r.hits[0].id, "1", "{r:?}");
    assert_eq!(r.hits[0].matched, Matched::Semantic);
    let r = q("sneakers for jogging", None);
    assert_eq!(r.hits[0].id, "3", "{r:?}");
    // A word match and a meaning match: both.
    let r = q("garden", None);
    assert!(
        r.hits.iter().take(2).all(|h| h.category == "garden"),
        "{r:?}"
    );
    assert!(r.hits.iter().any(|h| h.matched == Matched::Both), "{r:?}");
    assert!(r.facets["garden"] >= 2, "{:?}", r.facets);
    // The category filter keeps the facets of the whole query.
    let r = q("garden", Some("shoes"));
    assert!(r.hits.iter().all(|h| h.category == "shoes"));
    assert!(r.facets["garden"] >= 2);
    // Full-text only (no embedding) still answers.
    let r = index.search("boots", None, None, 3);
    assert_eq!(r.hits.len(), 1);
    assert_eq!(
        (r.hits[0].id.as_str(), r.hits[0].matched),
        ("6", Matched::Text)
    );
    assert_eq!(index.suggest("gar", 5), vec!["garden".to_string()]);
    let s = index.suggest("waterproof bo", 5);
    assert!(s.contains(&"waterproof boots".to_string()), "{s:?}");
    assert!(s.iter().all(|x| x.starts_with("waterproof bo")), "{s:?}");
    assert!(index.suggest("zzz", 5).is_empty());
}

#[test]
fn a_rebuild_reuses_unchanged_embeddings_and_redoes_changed_ones() {
    let enc = encoder();
    let a = vec![
        doc("1", "Wireless earbuds", "Bluetooth audio", "electronics"),
        doc("2", "Garden hose", "Green hose", "garden"),
    ];
    let first = SearchIndex::build(a.clone(), Some(&enc), &mut |_, _| {}).unwrap();
    let mut embedded = 0;
    let mut b = a.clone();
    b[1].title = "Electric kettle".into();
    b.push(doc("3", "Running shoes", "Trainers", "shoes"));
    let second = SearchIndex::rebuild(b.clone(), Some(&enc), Some(&first), &mut |_, n| {
        embedded = n
    })
    .unwrap();
    assert_eq!(embedded, 2, "the changed and the new document only");
    let fresh = SearchIndex::build(b, Some(&enc), &mut |_, _| {}).unwrap();
    let v = enc.embed(&["kettle"]).unwrap().remove(0);
    assert_eq!(
        second.search("kettle", Some(&v), None, 3),
        fresh.search("kettle", Some(&v), None, 3)
    );
}
