//! `shopstream bench checkout`: the services' throughput and latency against the local
//! stack, over real HTTP on loopback. Full checkouts (add to cart, then the saga: order,
//! reservation, payment simulator, shipment, confirmation, outbox) and product-detail GETs,
//! with the outbox relay publishing to Kafka alongside. Prints a table; not a test.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use sqlx::Connection;
use tokio::sync::watch;
use uuid::Uuid;

use crate::cmd::lifecycle::stopped;
use crate::cmd::platform;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Checkout orders/s and p50/p99, product GET req/s and p99 (targets: >= 1,500
    /// checkouts/s with p99 < 50 ms; >= 20,000 GET/s with p99 < 10 ms). Uses a fresh
    /// database and private topics, removed afterwards; build with --release for meaningful
    /// figures.
    Checkout(CheckoutArgs),
    /// Stream processors fed from Kafka with simulator traffic: events/s per core for
    /// stateless decode+filter+enrich, hopping-window top-N and fraud scoring, and produce ->
    /// alert-in-review-queue latency p50/p99 (targets: >= 500K, >= 100K ev/s/core, p99 <
    /// 250 ms). Private database and topics, removed afterwards; build with --release.
    Streams(crate::cmd::bench_streams::StreamsArgs),
    /// The warehouse: loader events/s, freshness event -> visible in SQL (p99), the model
    /// build full and incremental, and an analyst query set over >= 10M order lines timed against DuckDB on the same Parquet
    /// files (targets: >= 200K events/s, p99 < 5 s, ratio <= 1.0). Private topics and lake,
    /// removed afterwards; build with --release.
    Warehouse(crate::cmd::bench_warehouse::WarehouseArgs),
    /// Recommendations: training time for 1M interactions (target < 2 min), HR@10/NDCG@10
    /// beside popularity and item-kNN, arroy recall@10, and the recommendation API's req/s
    /// and p99 (target >= 5,000/s with p99 < 10 ms). Private database, removed afterwards;
    /// build with --release.
    Ml(crate::cmd::bench_ml::MlArgs),
}

#[derive(Debug, Args)]
pub struct CheckoutArgs {
    /// Seconds of checkout load.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Distinct buyers (each checks out repeatedly).
    #[arg(long, default_value_t = 512)]
    buyers: usize,
    /// Products in the catalogue; each checkout buys a random one.
    #[arg(long, default_value_t = 1000)]
    products: usize,
    /// Seconds of checkout load before the measured load (not counted); the tables are
    /// analyzed after it.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds of product-detail GET load.
    #[arg(long, default_value_t = 10)]
    get_duration: u64,
    /// PostgreSQL connections in the services' pool [default: `database.max_connections`].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    db_connections: Option<u32>,
}

/// Latencies of one load phase.
pub(crate) struct Stats {
    pub count: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: usize,
}

pub(crate) fn stats(mut lat: Vec<Duration>, elapsed: Duration, errors: usize) -> Stats {
    lat.sort();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        count: lat.len(),
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        errors,
    }
}

pub(crate) type Worker = tokio::task::JoinHandle<(Vec<Duration>, usize)>;

/// Waits for the load workers and merges their latencies and error counts.
pub(crate) async fn gather(workers: Vec<Worker>, started: Instant) -> anyhow::Result<Stats> {
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in futures::future::join_all(workers).await {
        let (l, e) = w?;
        lat.extend(l);
        errors += e;
    }
    Ok(stats(lat, started.elapsed(), errors))
}

pub async fn run(cfg: &Config, cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Checkout(args) => {
            private(cfg, |mut c: Config| async move {
                // The services' pool as configured: more connections than the cores can
                // serve only add contention (see `DatabaseConfig::max_connections`).
                if let Some(n) = args.db_connections {
                    c.database.max_connections = n;
                }
                // Every client comes from 127.0.0.1: the per-IP limit would measure itself.
                c.services.rate_limit_ip_per_sec = 0.0;
                bench(&c, &args).await
            })
            .await
        }
        BenchCommand::Warehouse(args) => {
            private(cfg, |c: Config| async move {
                crate::cmd::bench_warehouse::run(&c, &args).await
            })
            .await
        }
        BenchCommand::Ml(args) => {
            private(cfg, |c: Config| async move {
                crate::cmd::bench_ml::run(&c, &args).await
            })
            .await
        }
        BenchCommand::Streams(args) => {
            private(cfg, |c: Config| async move {
                crate::cmd::bench_streams::run(&c, &args).await
            })
            .await
        }
    }
}

/// Runs `f` with a private database and private topics (so a benchmark neither reads nor
/// pollutes real data), both removed afterwards, also when the run is interrupted.
async fn private<F, Fut>(cfg: &Config, f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let name = format!("bench_{}", Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&cfg.database.url)
        .await
        .context("connecting to PostgreSQL")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let mut bench_cfg = cfg.clone();
    let (root, _) = cfg
        .database
        .url
        .rsplit_once('/')
        .context("database url has no name")?;
    bench_cfg.database.url = format!("{root}/{name}");
    bench_cfg.kafka.topic_prefix = format!("{name}.");
    // Ctrl-C or SIGTERM stops the benchmark, and its database and topics still go.
    let result = tokio::select! {
        r = f(bench_cfg.clone()) => r,
        _ = crate::cmd::lifecycle::wait_for_signal(None) => {
            eprintln!("interrupted: removing the benchmark's database and topics");
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    let topics: Vec<String> = bench_cfg
        .kafka
        .topic_names()
        .plan()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    if let Err(e) = ingest::TopicAdmin::new(&bench_cfg.kafka)?
        .delete(&refs)
        .await
        // A benchmark without Kafka (ml) made none.
        && !e.to_string().contains("UnknownTopicOrPartition")
    {
        eprintln!("warning: could not delete the benchmark's topics: {e}");
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `concurrency` clients checking out for `secs` seconds: each adds a random product to a
/// buyer's cart and checks it out, taking its buyers round-robin so no two share a cart.
///
/// The clients share the machine with what they measure, so they spend little: the URLs are
/// parsed once, the checkout's body is serialised once, and of each answer only `status` is
/// read (it must be `confirmed`).
async fn checkout_load(
    client: &reqwest::Client,
    base: &str,
    buyer_tokens: &[String],
    products: &std::sync::Arc<Vec<Uuid>>,
    concurrency: usize,
    secs: u64,
) -> anyhow::Result<Stats> {
    #[derive(serde::Deserialize)]
    struct Answer {
        status: String,
    }
    let add_url = reqwest::Url::parse(&format!("{base}/v1/cart/items"))?;
    let checkout_url = reqwest::Url::parse(&format!("{base}/v1/checkout"))?;
    let checkout_body = json!({
        "card_number": "4242424242424242", "billing_country": "DE", "shipping_country": "DE"
    })
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (client, products) = (client.clone(), products.clone());
            let (add_url, checkout_url, checkout_body) =
                (add_url.clone(), checkout_url.clone(), checkout_body.clone());
            let mine: Vec<String> = buyer_tokens
                .iter()
                .skip(w)
                .step_by(concurrency)
                .map(|t| format!("Bearer {t}"))
                .collect();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                for auth in mine.iter().cycle() {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let product = products[rand::random_range(0..products.len())];
                    let add = client
                        .post(add_url.clone())
                        .header(reqwest::header::AUTHORIZATION, auth)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(format!(r#"{{"product_id":"{product}","quantity":1}}"#))
                        .send()
                        .await;
                    if !add.is_ok_and(|r| r.status().is_success()) {
                        errors += 1;
                        continue;
                    }
                    let t = Instant::now();
                    let r = client
                        .post(checkout_url.clone())
                        .header(reqwest::header::AUTHORIZATION, auth)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .header("idempotency-key", Uuid::now_v7().to_string())
                        .body(checkout_body.clone())
                        .send()
                        .await;
                    let ok = match r {
                        Ok(r) if r.status().is_success() => r
                            .json::<Answer>()
                            .await
                            .is_ok_and(|a| a.status == "confirmed"),
                        _ => false,
                    };
                    if ok {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    gather(workers, started).await
}

async fn bench(cfg: &Config, args: &CheckoutArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.buyers < args.concurrency {
        anyhow::bail!("need --concurrency >= 1 and --buyers >= --concurrency");
    }
    ingest::TopicAdmin::new(&cfg.kafka)?
        .apply(&cfg.kafka.topic_names().plan())
        .await?;
    let pool = platform::connect_db(cfg).await?;
    let state = services::AppState::new(pool.clone(), &cfg.services);
    let tokens = state.tokens.clone();
    let batchers = state.clone();
    let app = services::router(state, &cfg.services);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future(),
    );
    let relay = platform::relay(cfg, pool.clone())?;
    let relay_task = tokio::spawn(async move { relay.run(stopped(stop_rx)).await });

    // Seed: one vendor, `--products` products with plenty of stock, many buyers with
    // sessions. Buyers pick products at random, so the figure is not one hot row's.
    let vendor = Uuid::now_v7();
    let mut products = Vec::with_capacity(args.products);
    for i in 0..args.products {
        let product = Uuid::now_v7();
        let sku = format!("BENCH-{i:05}");
        sqlx::query(
            "INSERT INTO catalog.products (id, sku, vendor_id, category, names, price_minor, currency, weight_grams)
             VALUES ($1, $2, $3, 'bench', '{\"en\": \"Bench product\"}', 1999, 'EUR', 250)",
        )
        .bind(product)
        .bind(&sku)
        .bind(vendor)
        .execute(&pool)
        .await?;
        sqlx::query("INSERT INTO inventory.stock (sku, on_hand) VALUES ($1, 1000000000)")
            .bind(&sku)
            .execute(&pool)
            .await?;
        products.push(product);
    }
    let products = std::sync::Arc::new(products);
    let product = products[0];
    let mut buyer_tokens = Vec::with_capacity(args.buyers);
    for _ in 0..args.buyers {
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        sqlx::query(
            "INSERT INTO auth.users (id, email, password_hash, display_name, country) VALUES ($1, $2, 'x', 'Bench', 'DE')",
        )
        .bind(user)
        .bind(format!("{user}@bench.invalid"))
        .execute(&pool)
        .await?;
        sqlx::query("INSERT INTO auth.sessions (id, user_id, ip) VALUES ($1, $2, '127.0.0.1')")
            .bind(session)
            .bind(user)
            .execute(&pool)
            .await?;
        buyer_tokens.push(tokens.issue_access(
            user,
            session,
            &[events::domain::users::Role::Customer],
        ));
    }
    // Planner statistics of the seeded tables, as a live database has them: without, the
    // first plans take the catalogue for empty and scan it.
    sqlx::query("ANALYZE").execute(&pool).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let base = format!("http://{addr}");
    eprintln!(
        "seeded {} buyers; checkout load for {} s (after {} s of warm-up) with {} clients",
        args.buyers, args.duration, args.warmup, args.concurrency
    );

    // A warm-up of the same load, then statistics of the tables as it leaves them (a live
    // database has them; a fresh one would be planned as empty), then the measured load.
    if args.warmup > 0 {
        let warm = checkout_load(
            &client,
            &base,
            &buyer_tokens,
            &products,
            args.concurrency,
            args.warmup,
        );
        warm.await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
    }
    let cpu_before = (machine_busy(), crate::cmd::bench_streams::cpu_time());
    let batched_before = BatchUse::of(&batchers);
    let checkout = checkout_load(
        &client,
        &base,
        &buyer_tokens,
        &products,
        args.concurrency,
        args.duration,
    )
    .await?;
    let cpu = CpuCost::since(cpu_before, checkout.count);
    let batched = BatchUse::of(&batchers).since(&batched_before);

    // Outbox drain: how long until every event of the run is in Kafka.
    let drain_start = Instant::now();
    loop {
        let mut conn = pool.acquire().await?;
        if ingest::outbox::pending_count(&mut conn).await? == 0 {
            break;
        }
        if relay_task.is_finished() {
            relay_task.await??;
            anyhow::bail!("the outbox relay stopped before the outbox drained");
        }
        if drain_start.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("the outbox did not drain within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = drain_start.elapsed();

    // Product detail GETs.
    let deadline = Instant::now() + Duration::from_secs(args.get_duration);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{base}/v1/products/{product}"));
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0usize);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match client.get(&url).send().await {
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
    let get = gather(workers, started).await?;

    let _ = stop_tx.send(true);
    server.await??;
    // Published rows leave the outbox, so the relay's own count says how many went.
    let relayed = relay_task.await??;
    let published = relayed.published;

    let rate = |s: &Stats| s.count as f64 / s.elapsed.as_secs_f64();
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>8}  target",
        "bench", "per s", "p50 ms", "p99 ms", "errors"
    );
    println!(
        "{:<22} {:>10.0} {:>10.2} {:>10.2} {:>8}  >= 1500/s, p99 < 50 ms",
        "checkout",
        rate(&checkout),
        checkout.p50.as_secs_f64() * 1e3,
        checkout.p99.as_secs_f64() * 1e3,
        checkout.errors
    );
    println!(
        "{:<22} {:>10.0} {:>10.2} {:>10.2} {:>8}  >= 20000/s, p99 < 10 ms",
        "product GET",
        rate(&get),
        get.p50.as_secs_f64() * 1e3,
        get.p99.as_secs_f64() * 1e3,
        get.errors
    );
    println!(
        "outbox: {published} events of {} measured checkouts (and the warm-up's) in Kafka {:.2} s after the load ended, in {} relay batches ({:.0} events per batch)",
        checkout.count,
        drain.as_secs_f64(),
        relayed.batches,
        published as f64 / relayed.batches.max(1) as f64
    );
    if let Some(cpu) = cpu {
        println!("{cpu}");
    }
    println!("{batched}");
    Ok(())
}

/// How the services' batchers (services::batch) shared statements: per kind of write,
/// what they had done when taken.
struct BatchUse(Vec<(&'static str, services::batch::BatchStats)>);

impl BatchUse {
    fn of(state: &services::AppState) -> BatchUse {
        fn stats<W: services::batch::Work>(
            b: &std::sync::OnceLock<services::batch::Batcher<W>>,
        ) -> (&'static str, services::batch::BatchStats) {
            (W::NAME, b.get().map(|b| b.stats()).unwrap_or_default())
        }
        BatchUse(vec![
            stats(&state.cart_adder),
            stats(&state.starter),
            stats(&state.placer),
            stats(&state.confirmer),
        ])
    }

    /// What was done since `before` (the largest batch is the largest since the start).
    fn since(&self, before: &BatchUse) -> BatchUse {
        let diff = |a: &services::batch::BatchStats, b: &services::batch::BatchStats| {
            services::batch::BatchStats {
                submitted: a.submitted - b.submitted,
                batches: a.batches - b.batches,
                failed_batches: a.failed_batches - b.failed_batches,
                largest: a.largest,
            }
        };
        BatchUse(
            self.0
                .iter()
                .zip(&before.0)
                .map(|((name, a), (_, b))| (*name, diff(a, b)))
                .collect(),
        )
    }
}

impl std::fmt::Display for BatchUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, s)) in self.0.iter().enumerate() {
            let per = s.submitted as f64 / s.batches.max(1) as f64;
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "shared statements, {name:<9} {:>7} jobs in {:>7} statements ({per:.1} per statement, \
                 largest {} since the start), {} failed and ran alone",
                s.submitted, s.batches, s.largest, s.failed_batches
            )?;
        }
        Ok(())
    }
}

/// CPU time the whole machine spent busy so far (all cores; user, system, interrupts,
/// steal: everything but idle and I/O wait), from `/proc/stat`. `None` off Linux.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(busy as f64 / hz as f64))
}

/// What the measured checkouts cost in CPU: the machine's busy time over the load divided by
/// the checkouts, and this process's share (the services, the bench's clients, the relay);
/// the rest is PostgreSQL, Kafka and anything else running. With every core busy, the cores
/// divided by this cost bound the rate.
struct CpuCost {
    machine: Duration,
    process: Duration,
    count: usize,
    cores: usize,
}

impl CpuCost {
    fn since((machine, process): (Option<Duration>, Duration), count: usize) -> Option<CpuCost> {
        let machine = machine_busy()?.checked_sub(machine?)?;
        (count > 0).then(|| CpuCost {
            machine,
            process: crate::cmd::bench_streams::cpu_time().saturating_sub(process),
            count,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }
}

impl std::fmt::Display for CpuCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = |d: Duration| d.as_secs_f64() * 1e3 / self.count as f64;
        let machine = per(self.machine);
        write!(
            f,
            "cpu per checkout: {machine:.2} ms machine-wide, {:.2} ms of it in this process \
             (services, bench clients, relay), {:.2} ms elsewhere (PostgreSQL, Kafka, other); \
             {} cores at this cost allow {:.0}/s",
            per(self.process),
            machine - per(self.process),
            self.cores,
            self.cores as f64 * 1e3 / machine
        )
    }
}
