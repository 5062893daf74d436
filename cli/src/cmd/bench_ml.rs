//! `shopstream bench ml`: training time for 1M interactions, the full-ranking evaluation
//! beside its baselines, the arroy index's recall against exact search, and the
//! recommendation API's throughput and latency over real HTTP. Prints a table; not a test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use ml::recs::model::{Filter, IndexParams, Recommender};
use ml::recs::pipeline::{self, KIND, TrainOptions};
use ml::recs::synth::{SynthSpec, generate};
use tokio::sync::watch;
use uuid::Uuid;

use crate::cmd::lifecycle::stopped;
use crate::cmd::platform;
use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct MlArgs {
    /// Interactions to train on (synthetic, with taste clusters).
    #[arg(long, default_value_t = 1_000_000)]
    interactions: usize,
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Seconds of API load per route.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Products in the catalogue for the search benchmark.
    #[arg(long, default_value_t = 2_000)]
    products: usize,
    /// Simulator products (one picture each) for the image-search benchmark.
    #[arg(long, default_value_t = 1_000)]
    images: usize,
    /// Only the image-search figures (no training, no HTTP load).
    #[arg(long)]
    images_only: bool,
    /// Skip the leave-last-out evaluation (it trains a second model).
    #[arg(long)]
    no_eval: bool,
    /// Trees per recommendation index (default: arroy grows as many as the items need).
    #[arg(long)]
    trees: Option<usize>,
    /// Candidates a recommendation query collects, as a multiple of arroy's default.
    #[arg(long, default_value_t = IndexParams::default().oversampling)]
    oversampling: usize,
    /// Catalogues up to this many items are scanned exactly instead of asking arroy.
    #[arg(long, default_value_t = IndexParams::default().scan_up_to)]
    scan_up_to: usize,
    /// Instead of the HTTP load, compare index settings on the trained model: for each
    /// tree count (0 = arroy's default) and oversampling, recall@10 against exact search
    /// and the time of one query, on one thread.
    #[arg(long)]
    index_sweep: bool,
    #[arg(long, value_delimiter = ',', default_value = "0,8,16,32,64")]
    sweep_trees: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    sweep_oversampling: Vec<usize>,
}

pub async fn run(cfg: &Config, args: &MlArgs) -> anyhow::Result<()> {
    let mut cfg = cfg.clone();
    let dir = std::env::temp_dir().join(format!("shopstream-bench-ml-{}", Uuid::now_v7()));
    cfg.services.models_dir = dir.join("models");
    // Every client is one admin from 127.0.0.1: the limits would measure themselves.
    cfg.services.rate_limit_ip_per_sec = 0.0;
    cfg.services.rate_limit_user_per_sec = 0.0;
    cfg.database.max_connections = (args.concurrency as u32 * 2).max(16);
    let result = bench(&cfg, args).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(cfg: &Config, args: &MlArgs) -> anyhow::Result<()> {
    if args.images_only {
        return print_images(cfg, args).await;
    }
    let spec = SynthSpec {
        users: args.users,
        items: args.items,
        interactions: args.interactions,
        clusters: 20,
        seed: 1,
    };
    eprintln!("generating {} synthetic interactions", args.interactions);
    let rows = generate(spec);
    let registry = ml::registry::Registry::new(&cfg.services.models_dir);
    let opts = TrainOptions {
        source: "synthetic".into(),
        evaluate: false,
        index: IndexParams {
            trees: args.trees,
            oversampling: args.oversampling,
            scan_up_to: args.scan_up_to,
        },
        ..TrainOptions::default()
    };
    let report = if args.no_eval || args.index_sweep {
        None
    } else {
        let (rows, opts) = (rows.clone(), opts.clone());
        Some(tokio::task::spawn_blocking(move || pipeline::evaluate(&rows, &opts)).await??)
    };
    let started = Instant::now();
    let reg = registry.clone();
    let meta = tokio::task::spawn_blocking(move || pipeline::train(&rows, &opts, &reg)).await??;
    let total = started.elapsed();
    registry.promote(KIND, &meta.version)?;

    let model_dir = registry.dir(KIND, &meta.version);
    if args.index_sweep {
        return sweep(&model_dir, &meta.version, args);
    }
    let mut model = Recommender::load(&model_dir, &meta.version)?;
    let served = model.index_params();
    let scanned = model.scans();
    // The index's own recall, even where the routes scan instead.
    model.set_query(served.oversampling, 0);
    let recall = index_recall(&model)?.0;
    let users: Vec<String> = model.user_ids().to_vec();
    drop(model);

    // The API over HTTP, with a private database for the admin's session.
    let pool = platform::connect_db(cfg).await?;
    services::migrate(&pool).await?;
    let state = services::AppState::new(pool.clone(), &cfg.services);
    state
        .models
        .refresh(&pool)
        .await
        .map_err(anyhow::Error::msg)?;
    let (admin, session) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        "INSERT INTO auth.users (id, email, password_hash, display_name, country, roles)
         VALUES ($1, $2, 'x', 'Bench', 'DE', ARRAY['admin'])",
    )
    .bind(admin)
    .bind(format!("{admin}@bench.invalid"))
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO auth.sessions (id, user_id, ip) VALUES ($1, $2, '127.0.0.1')")
        .bind(session)
        .bind(admin)
        .execute(&pool)
        .await?;
    let token = state
        .tokens
        .issue_access(admin, session, &[events::domain::users::Role::Admin]);
    // A catalogue for search: titles and descriptions from the simulator's vocabulary.
    let (colours, patterns, cats) = (
        [
            "red", "blue", "green", "black", "white", "yellow", "purple", "orange",
        ],
        ["plain", "striped", "checked", "dotted", "floral"],
        [
            "apparel",
            "shoes",
            "electronics",
            "home",
            "toys",
            "books",
            "beauty",
            "sports",
            "garden",
            "grocery",
        ],
    );
    for n in 0..args.products {
        let (c, p, k) = (colours[n % 8], patterns[(n / 8) % 5], cats[(n / 40) % 10]);
        sqlx::query(
            "INSERT INTO catalog.products (id, sku, vendor_id, category, names, descriptions, price_minor, currency, weight_grams)
             VALUES ($1, $2, $3, $4, jsonb_build_object('en', $5::text), jsonb_build_object('en', $6::text), 1999, 'EUR', 250)",
        )
        .bind(Uuid::now_v7())
        .bind(format!("BENCH-ML-{n:06}"))
        .bind(admin)
        .bind(k)
        .bind(format!("{c} {p} {k} item {n}"))
        .bind(format!("A {c} {p} piece from our {k} range, model {n}."))
        .execute(&pool)
        .await?;
    }
    let indexed = Instant::now();
    state
        .models
        .search
        .refresh(&pool)
        .await
        .map_err(anyhow::Error::msg)?;
    let index_secs = indexed.elapsed().as_secs_f64();
    anyhow::ensure!(
        state.models.search.encoder().is_some(),
        "the text model did not load: {}",
        state.models.search.load_error().unwrap_or_default()
    );
    let app = services::router(state, &cfg.services);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx))
        .into_future(),
    );
    let base = format!("http://{addr}");
    let users = std::sync::Arc::new(users);
    let recs = load(
        args,
        args.concurrency,
        {
            let (base, users) = (base.clone(), users.clone());
            move |n| {
                format!(
                    "{base}/v1/recommendations/users/{}?limit=10",
                    users[n % users.len()]
                )
            }
        },
        Some(token.clone()),
    )
    .await?;
    let items = std::sync::Arc::new((0..args.items).map(|i| format!("i{i}")).collect::<Vec<_>>());
    let similar = load(
        args,
        args.concurrency,
        {
            let (base, items) = (base.clone(), items.clone());
            move |n| {
                format!(
                    "{base}/v1/products/{}/similar?limit=10",
                    items[n % items.len()]
                )
            }
        },
        None,
    )
    .await?;
    let queries = std::sync::Arc::new(vec![
        "warm winter boots",
        "something for the garden",
        "striped shirt",
        "gift for a child",
        "blue checked dress",
        "kitchen things",
        "running gear",
        "a good novel",
    ]);
    let search_url = {
        let (base, queries) = (base.clone(), queries.clone());
        move |n: usize| {
            format!(
                "{base}/v1/search?q={}&limit=20",
                queries[n % queries.len()].replace(' ', "+")
            )
        }
    };
    // One query at a time (the latency of a query, like the image query's), then under load.
    let search_alone = load(args, 1, search_url.clone(), None).await?;
    let search = load(args, args.concurrency, search_url, None).await?;
    let _ = stop_tx.send(true);
    server.await??;

    println!(
        "recommendations, {} synthetic interactions ({} users, {} items), 64 factors, 12 epochs",
        args.interactions, args.users, args.items
    );
    println!("{:<30} {:>12}  target", "measure", "value");
    println!(
        "{:<30} {:>10.1} s  < 120 s (iALS {:.1} s; + indexing)",
        format!("train {} interactions", args.interactions),
        total.as_secs_f64(),
        meta.train_secs
    );
    println!(
        "{:<30} {:>12.3}  (oversampling {}; the routes {})",
        "arroy recall@10 vs exact",
        recall,
        served.oversampling,
        if scanned {
            format!(
                "scan all vectors exactly: {} items <= --scan-up-to {}",
                args.items, served.scan_up_to
            )
        } else {
            "ask arroy".to_string()
        }
    );
    for (name, s) in [("GET recommendations", &recs), ("GET similar", &similar)] {
        println!(
            "{:<30} {:>10.0}/s  p50 {:.2} ms, p99 {:.2} ms, {} errors{}",
            name,
            s.0,
            s.1.as_secs_f64() * 1e3,
            s.2.as_secs_f64() * 1e3,
            s.3,
            if name == "GET recommendations" {
                "  (target >= 5,000/s, p99 < 10 ms)"
            } else {
                ""
            }
        );
    }
    if let Some(r) = report {
        println!(
            "leave-last-out, full ranking over {} items, {} test users:",
            r.items, r.test_users
        );
        for (name, m) in [
            ("ials", r.als),
            ("popularity", r.popularity),
            ("item-knn", r.item_knn),
        ] {
            println!(
                "  {name:<12} HR@10 {:.4}  NDCG@10 {:.4}",
                m.hr_at_10, m.ndcg_at_10
            );
        }
    }
    println!(
        "{:<30} {:>10.0}/s  p50 {:.2} ms, p99 {:.2} ms, {} errors  (target p99 < 30 ms; {} products embedded in {index_secs:.1} s)",
        "GET search, one client",
        search_alone.0,
        search_alone.1.as_secs_f64() * 1e3,
        search_alone.2.as_secs_f64() * 1e3,
        search_alone.3,
        args.products
    );
    println!(
        "{:<30} {:>10.0}/s  p50 {:.2} ms, p99 {:.2} ms, {} errors",
        format!("GET search, {} clients", args.concurrency),
        search.0,
        search.1.as_secs_f64() * 1e3,
        search.2.as_secs_f64() * 1e3,
        search.3
    );
    print_images(cfg, args).await
}

/// Recall@10 of the index against exact search on 500 users, and the time of each of
/// their queries as the route asks them (leaving out what the user bought).
fn index_recall(model: &Recommender) -> anyhow::Result<(f64, Vec<Duration>)> {
    let (mut hit, mut n, mut times) = (0usize, 0usize, Vec::new());
    let route = Filter {
        exclude_bought: true,
        ..Filter::default()
    };
    for u in model
        .user_ids()
        .iter()
        .step_by((model.users() / 500).max(1))
        .take(500)
    {
        let exact = model.exact(u, 10).unwrap_or_default();
        let (_, got) = model.recommend(u, 10, &Filter::default())?;
        hit += got
            .iter()
            .filter(|g| {
                model
                    .item_number(&g.item)
                    .is_some_and(|i| exact.contains(&i))
            })
            .count();
        n += exact.len();
        let t = Instant::now();
        model.recommend(u, 10, &route)?;
        times.push(t.elapsed());
    }
    Ok((hit as f64 / n.max(1) as f64, times))
}

/// `--index-sweep`: each tree count and oversampling on the same trained vectors.
fn sweep(model_dir: &std::path::Path, version: &str, args: &MlArgs) -> anyhow::Result<()> {
    println!(
        "index sweep, {} interactions ({} users, {} items): one thread, 500 users, k = 10",
        args.interactions, args.users, args.items
    );
    println!(
        "{:>6} {:>12} {:>10} {:>14} {:>14} {:>16}",
        "trees", "oversampling", "recall@10", "recs p50 µs", "recs p99 µs", "similar p50 µs"
    );
    let scratch = model_dir.with_extension("sweep");
    for &trees in &args.sweep_trees {
        let dir = scratch.join(format!("t{trees}"));
        let params = IndexParams {
            trees: (trees > 0).then_some(trees),
            ..IndexParams::default()
        };
        ml::recs::model::rebuild(model_dir, &dir, params)?;
        let mut model = Recommender::load(&dir, version)?;
        let built = model.trees()?;
        for &o in &args.sweep_oversampling {
            model.set_query(o, 0);
            sweep_row(&model, &built.to_string(), &o.to_string())?;
        }
        drop(model);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut model = Recommender::load(model_dir, version)?;
    model.set_query(1, usize::MAX);
    sweep_row(&model, "-", "exact scan")
}

/// One line of the sweep: recall, recommendation and similar-item query times.
fn sweep_row(model: &Recommender, trees: &str, how: &str) -> anyhow::Result<()> {
    let (recall, times) = index_recall(model)?;
    let mut sim = Vec::new();
    for i in (0..model.items())
        .step_by((model.items() / 500).max(1))
        .take(500)
    {
        let id = model.item_id(i as u32).to_string();
        let t = Instant::now();
        model.similar(&id, 10, &Filter::default())?;
        sim.push(t.elapsed());
    }
    let (recs, sim) = (
        crate::cmd::bench::stats(times, Duration::ZERO, 0),
        crate::cmd::bench::stats(sim, Duration::ZERO, 0),
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{trees:>6} {how:>12} {recall:>10.3} {:>14.0} {:>14.0} {:>16.0}",
        us(recs.p50),
        us(recs.p99),
        us(sim.p50)
    );
    Ok(())
}

async fn print_images(cfg: &Config, args: &MlArgs) -> anyhow::Result<()> {
    let img = bench_images(cfg, args.images, &dir_of(cfg)).await?;
    println!(
        "image search, {} simulator products (one picture each), EfficientNet-Lite0 1280-d:",
        args.images
    );
    println!(
        "{:<30} {:>10.1}/s  ({:.1} s for all, sequentially; index built in {:.2} s)",
        "embed pictures",
        args.images as f64 / img.embed_secs,
        img.embed_secs,
        img.index_secs
    );
    println!(
        "{:<30} {:>12}  p50 {:.2} ms, p99 {:.2} ms over {} queries, of which arroy p99 {:.2} ms  (target p99 < 50 ms)",
        "image query (decode+embed+knn)",
        "",
        img.p50.as_secs_f64() * 1e3,
        img.p99.as_secs_f64() * 1e3,
        img.queries,
        img.knn_p99.as_secs_f64() * 1e3
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = img.profile;
    println!(
        "{:<30} {:>12}  stem {:.2} ms, expand 1x1 {:.2} ms, depthwise {:.2} ms, project 1x1 {:.2} ms, head {:.2} ms",
        "network, per picture",
        "",
        ms(p.stem),
        ms(p.expand),
        ms(p.depthwise),
        ms(p.project),
        ms(p.head)
    );
    println!("{:<30} {:>12.3}", "arroy recall@10 vs exact", img.recall);
    println!(
        "{:<30} {:>12.3}  (top 10: {:.3}; chance {:.3})",
        "top-1 shares the category", img.top1_same, img.top10_same, img.chance
    );
    Ok(())
}

fn dir_of(cfg: &Config) -> std::path::PathBuf {
    cfg.services
        .models_dir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

struct ImageFigures {
    embed_secs: f64,
    index_secs: f64,
    queries: usize,
    p50: Duration,
    p99: Duration,
    /// The index lookup alone.
    knn_p99: Duration,
    /// The network's time per kind of layer.
    profile: ml::vision::effnet::Profile,
    recall: f64,
    top1_same: f64,
    top10_same: f64,
    chance: f64,
}

/// Embeds the simulator's product pictures, indexes them, then queries with a second
/// rendering of a product's picture (other pixel noise: another photo of the same thing).
/// Query latency is decoding the PNG, the network and the index lookup: no HTTP upload.
async fn bench_images(
    cfg: &Config,
    products: usize,
    dir: &std::path::Path,
) -> anyhow::Result<ImageFigures> {
    use ingest::simulate::{Generator, SimConfig, images};
    use ml::vision::ImageEncoder;
    use ml::vision::index::{ImageIndex, Item};

    let model_dir = cfg.services.image_model_dir.clone();
    let root = dir.join("image-index");
    tokio::task::spawn_blocking(move || -> anyhow::Result<ImageFigures> {
        let enc = ImageEncoder::load(&model_dir)
            .map_err(|e| anyhow::anyhow!("the image model did not load: {e}"))?;
        let world = Generator::new(SimConfig {
            seed: 7,
            products,
            ..SimConfig::default()
        })
        .world()
        .products
        .clone();
        let started = Instant::now();
        let mut progress = ml::progress::Progress::new("pictures", world.len() as u64);
        let mut items = Vec::with_capacity(world.len());
        for (n, p) in world.iter().enumerate() {
            let png = images::png(p, 7)?;
            let vector = enc
                .embed_bytes(&png)?
                .map_err(|r| anyhow::anyhow!("simulator picture refused: {r}"))?;
            items.push(Item {
                image: format!("{}-0", p.id),
                product: p.id.to_string(),
                category: p.category.to_string(),
                vector,
            });
            progress.set(n as u64 + 1);
        }
        progress.finish();
        let embed_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let index = ImageIndex::build(&root, items, &mut |_, _| {})?;
        let index_secs = started.elapsed().as_secs_f64();
        let queries = world.len().min(300);
        let (mut lat, mut recall, mut top1, mut top10, mut shown) =
            (Vec::with_capacity(queries), 0usize, 0usize, 0usize, 0usize);
        let mut knn = Vec::with_capacity(queries);
        let step = (world.len() / queries).max(1);
        for p in world.iter().step_by(step).take(queries) {
            let photo = images::png(p, 8)?;
            let t = Instant::now();
            let v = enc
                .embed_bytes(&photo)?
                .map_err(|r| anyhow::anyhow!("simulator picture refused: {r}"))?;
            let k = Instant::now();
            let hits = index.search(&v, 10, None, None)?;
            knn.push(k.elapsed());
            lat.push(t.elapsed());
            let exact: std::collections::HashSet<String> = index
                .exact(&v, 10, None, None)
                .into_iter()
                .map(|h| h.product)
                .collect();
            recall += hits.iter().filter(|h| exact.contains(&h.product)).count();
            top1 += usize::from(hits.first().is_some_and(|h| h.category == p.category));
            top10 += hits.iter().filter(|h| h.category == p.category).count();
            shown += hits.len();
        }
        let asked = lat.len();
        let query = crate::cmd::bench::stats(lat, Duration::ZERO, 0);
        let lookup = crate::cmd::bench::stats(knn, Duration::ZERO, 0);
        let profile = enc.profile(20)?;
        let mut per_cat: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for p in &world {
            *per_cat.entry(p.category).or_default() += 1;
        }
        let n = world.len() as f64;
        let chance = per_cat.values().map(|c| (*c as f64 / n).powi(2)).sum();
        Ok(ImageFigures {
            embed_secs,
            index_secs,
            queries: asked,
            p50: query.p50,
            p99: query.p99,
            knn_p99: lookup.p99,
            profile,
            recall: recall as f64 / (asked * 10) as f64,
            top1_same: top1 as f64 / asked as f64,
            top10_same: top10 as f64 / shown.max(1) as f64,
            chance,
        })
    })
    .await?
}

/// Requests per second, p50, p99 and errors of `concurrency` clients for `duration` seconds.
async fn load(
    args: &MlArgs,
    concurrency: usize,
    url: impl Fn(usize) -> String + Send + Sync + 'static,
    token: Option<String>,
) -> anyhow::Result<(f64, Duration, Duration, usize)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let url = std::sync::Arc::new(url);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0usize);
                let mut n = w * 7919;
                while Instant::now() < deadline {
                    n += 104_729;
                    let mut req = client.get(url(n));
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    let t = Instant::now();
                    match req.send().await {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(_) => lat.push(t.elapsed()),
                            Err(_) => errors += 1,
                        },
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let s = crate::cmd::bench::gather(workers, started).await?;
    Ok((
        s.count as f64 / s.elapsed.as_secs_f64(),
        s.p50,
        s.p99,
        s.errors,
    ))
}
