use std::collections::HashMap;

use ml::recs::als::AlsParams;
use ml::recs::data::{Interaction, Weighting, read_file, write_csv};
use ml::recs::model::{Filter, Recommender, Strategy};
use ml::recs::pipeline::{self, KIND, TrainOptions};
use ml::recs::synth::{SynthSpec, generate};
use ml::registry::Registry;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ml-it-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small() -> Vec<Interaction> {
    generate(SynthSpec {
        users: 600,
        items: 300,
        interactions: 12_000,
        clusters: 6,
        seed: 3,
    })
}

fn params() -> AlsParams {
    AlsParams {
        factors: 16,
        epochs: 8,
        ..AlsParams::default()
    }
}

/// Category = the synthetic taste cluster of the item (50 items each).
fn categories(rows: &[Interaction]) -> HashMap<String, String> {
    rows.iter()
        .map(|r| {
            let n: usize = r.item[1..].parse().unwrap();
            (r.item.clone(), format!("c{}", n / 50))
        })
        .collect()
}

#[test]
fn ials_beats_both_baselines_under_full_ranking() {
    let rows = small();
    let opts = TrainOptions {
        params: params(),
        weighting: Weighting::default(),
        ..TrainOptions::default()
    };
    let r = pipeline::evaluate(&rows, &opts).unwrap();
    println!("{r:?}");
    assert_eq!(r.items, 300);
    assert!(r.test_users > 500, "{}", r.test_users);
    // The data has clusters popularity cannot see: the model must use them.
    assert!(r.als.hr_at_10 > r.popularity.hr_at_10 * 1.3, "{r:?}");
    assert!(r.als.ndcg_at_10 > r.popularity.ndcg_at_10, "{r:?}");
    assert!(r.item_knn.hr_at_10 > r.popularity.hr_at_10, "{r:?}");
    assert!(r.als.hr_at_10 > r.item_knn.hr_at_10, "{r:?}");
    assert!(r.als.hr_at_10 <= 1.0 && r.als.ndcg_at_10 <= r.als.hr_at_10);
}

#[test]
fn trained_model_serves_filters_and_falls_back_to_popularity() {
    let rows = small();
    let reg = Registry::new(temp("reg"));
    let opts = TrainOptions {
        params: params(),
        categories: categories(&rows),
        source: "synthetic".into(),
        evaluate: true,
        ..TrainOptions::default()
    };
    let meta = pipeline::train(&rows, &opts, &reg).unwrap();
    assert_eq!(meta.version, "v1");
    assert_eq!(meta.rows, 12_000);
    assert!(meta.metrics["hr_at_10"] > meta.metrics["popularity_hr_at_10"]);
    assert!(
        meta.files.contains_key("factors.safetensors"),
        "{:?}",
        meta.files
    );
    reg.promote(KIND, "v1").unwrap();
    let mut m = Recommender::load(&reg.dir(KIND, "v1"), "v1").unwrap();
    assert_eq!((m.users(), m.items()), (600, 300));
    // 300 items are scanned exactly by default; then the same through the arroy indexes.
    assert!(m.scans());
    serves_filters(&m, &rows, 1.0);
    m.set_query(m.index_params().oversampling, 0);
    assert!(!m.scans());
    serves_filters(&m, &rows, 0.8);
}

/// The filters, popularity fallback and similar items; top 10s agree with exact search on
/// at least `recall` of their items.
fn serves_filters(m: &Recommender, rows: &[Interaction], recall: f64) {
    // A known user: personalised, k items, none repeated.
    let user = &rows[0].user;
    let (s, top) = m.recommend(user, 10, &Filter::default()).unwrap();
    assert_eq!(s, Strategy::Personalized);
    assert_eq!(top.len(), 10);
    let mut ids: Vec<&str> = top.iter().map(|t| t.item.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    assert!(top.windows(2).all(|w| w[0].score >= w[1].score));

    // Category filter: only that category.
    let (_, c1) = m
        .recommend(
            user,
            10,
            &Filter {
                category: Some("c1"),
                ..Filter::default()
            },
        )
        .unwrap();
    assert!(
        !c1.is_empty() && c1.iter().all(|t| t.category.as_deref() == Some("c1")),
        "{c1:?}"
    );
    // Exclude bought: none of the user's purchases.
    let bought: Vec<&str> = rows
        .iter()
        .filter(|r| &r.user == user && r.purchase)
        .map(|r| r.item.as_str())
        .collect();
    let (_, nb) = m
        .recommend(
            user,
            50,
            &Filter {
                exclude_bought: true,
                ..Filter::default()
            },
        )
        .unwrap();
    assert!(nb.iter().all(|t| !bought.contains(&t.item.as_str())));
    // An allow-list (in stock): only those.
    let only: roaring::RoaringBitmap = (0..20u32).collect();
    let (_, st) = m
        .recommend(
            user,
            50,
            &Filter {
                only: Some(&only),
                ..Filter::default()
            },
        )
        .unwrap();
    assert_eq!(st.len(), 20);
    assert!(st.iter().all(|t| m.item_number(&t.item).unwrap() < 20));

    // The answers agree with exact search on the top 10.
    let mut overlap = 0;
    for r in rows.iter().take(50) {
        let exact = m.exact(&r.user, 10).unwrap();
        let (_, got) = m.recommend(&r.user, 10, &Filter::default()).unwrap();
        overlap += got
            .iter()
            .filter(|g| exact.contains(&m.item_number(&g.item).unwrap()))
            .count();
    }
    assert!(
        overlap as f64 / 500.0 >= recall,
        "recall@10 {}, wanted {recall}",
        overlap as f64 / 500.0
    );

    // An unknown user gets the popular items, most popular first.
    let (s, pop) = m.recommend("nobody", 5, &Filter::default()).unwrap();
    assert_eq!(s, Strategy::Popular);
    assert_eq!(pop.len(), 5);
    assert!(pop.windows(2).all(|w| w[0].score >= w[1].score));

    // Similar items: not the item itself, mostly its own cluster.
    let item = "i10";
    let sim = m.similar(item, 10, &Filter::default()).unwrap().unwrap();
    assert_eq!(sim.len(), 10);
    assert!(sim.iter().all(|s| s.item != item));
    let same = sim
        .iter()
        .filter(|s| s.category.as_deref() == Some("c0"))
        .count();
    assert!(same >= 6, "{sim:?}");
    assert!(
        m.similar("no-such-item", 10, &Filter::default())
            .unwrap()
            .is_none()
    );
}

#[test]
fn interactions_files_round_trip_and_bad_ones_are_refused() {
    let dir = temp("files");
    let rows = small();
    let p = dir.join("i.csv");
    write_csv(&p, &rows[..100]).unwrap();
    let back = read_file(&p).unwrap();
    assert_eq!(back.len(), 100);
    assert_eq!(back[7], rows[7]);
    let e = read_file(&dir.join("x.json")).unwrap_err().to_string();
    assert!(e.contains(".csv or .parquet"), "{e}");
    std::fs::write(
        dir.join("k.csv"),
        "user,item,weight,timestamp,kind\na,b,1,5,bought\n",
    )
    .unwrap();
    let e = read_file(&dir.join("k.csv")).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("kind"), "{e}");
}

#[test]
fn parquet_interactions_are_read() {
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let dir = temp("pq");
    let path = dir.join("i.parquet");
    let batch = RecordBatch::try_from_iter([
        (
            "user",
            Arc::new(StringArray::from(vec!["a", "a", "b"])) as _,
        ),
        (
            "item",
            Arc::new(StringArray::from(vec!["x", "y", "x"])) as _,
        ),
        (
            "weight",
            Arc::new(Float64Array::from(vec![1.0, 5.0, 3.0])) as _,
        ),
        (
            "timestamp",
            Arc::new(Int64Array::from(vec![
                1_700_000_000,
                1_700_000_100,
                1_700_000_200,
            ])) as _,
        ),
    ])
    .unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let rows = read_file(&path).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].ts_ms, 1_700_000_100_000);
    assert!(rows[1].purchase && !rows[0].purchase);
    assert_eq!(rows[2].weight, 3.0);
}
