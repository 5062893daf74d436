//! `shopstream bench streams`: the stream processors over simulator traffic in Kafka.
//!
//! Each processor runs on one task (one core of processing; librdkafka's fetch threads work
//! beside it), from the start of the topics until idle, checkpointing as in production.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use events::domain::clickstream::ProductViewed;
use events::domain::orders::{CardRef, OrderLine, OrderPlaced};
use events::{Country, Currency, DomainEvent, Envelope, Event, Money, Quantity, Sku, Topic};
use ingest::EventProducer;
use ingest::simulate::{SimConfig, run_direct};
use sqlx::PgPool;
use streams::aggregate::{MINUTE, Sum};
use streams::engine::{In, Mode, Out, Processor, RunReport};
use streams::fraud::{FraudDetector, Model, Thresholds, load_rules};
use streams::table::Products;
use streams::window::{Millis, WindowSpec, Windowed};
use streams::{EngineConfig, engine};
use tokio::sync::watch;
use uuid::Uuid;

use crate::cmd::lifecycle::stopped;
use crate::cmd::platform;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct StreamsArgs {
    /// Simulator events produced first (direct mode), then processed by each benchmark.
    /// Enough that start-up and the final checkpoint weigh little in the per-CPU rates.
    #[arg(long, default_value_t = 3_000_000)]
    events: u64,
    /// Alert-worthy orders for the latency measurement.
    #[arg(long, default_value_t = 300)]
    alerts: usize,
    /// Run only these parts (repeatable): a = stateless, b = top-N, c = fraud scoring,
    /// d = alert latency (runs c first, whose checkpoint it starts from).
    #[arg(long, value_enum)]
    only: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    A,
    B,
    C,
    D,
}

/// One processor's run over the produced events.
struct Timed {
    report: RunReport,
    /// Events per second of wall time, start-up (consumer group join) included.
    wall: f64,
    /// Events per second of processing: the engine's active span (first record polled to the
    /// last batch done), without start-up and the idle wait at the end.
    active: f64,
    /// Events per CPU-second used by this process (the processing task, librdkafka's fetch
    /// and decompression threads, checkpoints); the broker's CPU is not counted.
    per_cpu: f64,
    /// CPU cores this process used on average over the active span.
    cores: f64,
}

/// CPU time (user + system) used by this process so far, all threads.
pub(crate) fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (a) Stateless: decode, keep orders and product views, enrich with the product's category.
/// With `by_type`, the other events are dropped by their `ce_type` header, undecoded (as a
/// processor declares with [`Processor::wants`]); without it every event is decoded first.
struct Stateless {
    by_type: bool,
    products: Products,
    kept: u64,
    by_category: HashMap<String, u64>,
}

impl Processor for Stateless {
    type State = ();
    fn name(&self) -> &'static str {
        if self.by_type {
            "bench-stateless"
        } else {
            "bench-stateless-decode-all"
        }
    }
    fn mode(&self) -> Mode {
        Mode::Partitioned
    }
    fn inputs(&self) -> Vec<Topic> {
        vec![
            Topic::Clickstream,
            Topic::Carts,
            Topic::Orders,
            Topic::Payments,
        ]
    }
    fn new_state(&self) {}
    fn wants(&self, event_type: &str) -> bool {
        !self.by_type || event_type == ProductViewed::TYPE || event_type == OrderPlaced::TYPE
    }
    fn on_event(&mut self, _: &mut (), input: &In<'_>, _: &mut Out) {
        let product = match &input.envelope.event {
            Event::ProductViewed(v) => v.product_id,
            Event::OrderPlaced(o) => match o.lines.first() {
                Some(l) => l.product_id,
                None => return,
            },
            _ => return,
        };
        self.kept += 1;
        if let Some(f) = self.products.by_id.get(&product) {
            match self.by_category.get_mut(&f.category) {
                Some(n) => *n += 1,
                None => {
                    self.by_category.insert(f.category.clone(), 1);
                }
            }
        }
    }
    fn on_watermark(&mut self, _: &mut (), _: Millis, _: &mut Out) {}
}

/// (b) Hopping 5 min / 1 min windows of product views, top 10 per window as it fires.
struct TopN {
    windows_fired: u64,
}

impl Processor for TopN {
    type State = Windowed<Uuid, Sum>;
    fn name(&self) -> &'static str {
        "bench-topn"
    }
    fn mode(&self) -> Mode {
        Mode::Partitioned
    }
    fn inputs(&self) -> Vec<Topic> {
        vec![Topic::Clickstream]
    }
    fn wants(&self, event_type: &str) -> bool {
        event_type == ProductViewed::TYPE
    }
    fn new_state(&self) -> Self::State {
        Windowed::new(
            WindowSpec::Hopping {
                size: 5 * MINUTE,
                slide: MINUTE,
            },
            0,
        )
    }
    fn on_event(&mut self, st: &mut Self::State, input: &In<'_>, _: &mut Out) {
        if let Event::ProductViewed(v) = &input.envelope.event {
            st.add(input.ts, &v.product_id, |s| s.count += 1);
        }
    }
    fn on_watermark(&mut self, st: &mut Self::State, wm: Millis, _: &mut Out) {
        let mut by_window: HashMap<i64, Vec<(i64, Uuid)>> = HashMap::new();
        for e in st.advance(wm) {
            by_window
                .entry(e.window.start)
                .or_default()
                .push((e.value.count, e.key));
        }
        for (_, mut v) in by_window {
            v.sort_unstable_by(|a, b| b.cmp(a));
            v.truncate(10);
            self.windows_fired += 1;
        }
    }
}

async fn timed<P: Processor>(
    p: P,
    pool: &PgPool,
    cfg: &Config,
    idle: Duration,
) -> anyhow::Result<Timed> {
    let mut e = EngineConfig::new(cfg.kafka.clone());
    e.stop_when_idle = Some(idle);
    e.checkpoint_every = Duration::from_secs(1);
    let (t, cpu) = (Instant::now(), cpu_time());
    let r = engine::run(p, pool.clone(), e, std::future::pending()).await?;
    let secs = (t.elapsed().saturating_sub(idle)).as_secs_f64().max(1e-3);
    let cpu = cpu_time().saturating_sub(cpu).as_secs_f64().max(1e-3);
    let active = r.active.as_secs_f64().max(1e-3);
    Ok(Timed {
        wall: r.processed as f64 / secs,
        active: r.processed as f64 / active,
        per_cpu: r.processed as f64 / cpu,
        cores: cpu / active,
        report: r,
    })
}

pub async fn run(cfg: &Config, args: &StreamsArgs) -> anyhow::Result<()> {
    ingest::TopicAdmin::new(&cfg.kafka)?
        .apply(&cfg.kafka.topic_names().plan())
        .await?;
    let pool = platform::connect_db(cfg).await?;
    println!(
        "producing {} simulator events (direct mode)...",
        args.events
    );
    let (kafka, n) = (cfg.kafka.clone(), args.events);
    let produced = tokio::task::spawn_blocking(move || {
        run_direct(
            &kafka,
            SimConfig {
                fraud_rate: 0.02,
                ..SimConfig::default()
            },
            n,
            None,
            |_| {},
        )
    })
    .await??;
    println!(
        "produced {} events at {:.0}/s",
        produced.events,
        produced.per_sec()
    );
    let idle = Duration::from_secs(3);

    let runs = |p: Part| args.only.is_empty() || args.only.contains(&p);
    let stateless = |by_type| -> anyhow::Result<Stateless> {
        Ok(Stateless {
            by_type,
            products: Products::load(&cfg.kafka)?,
            kept: 0,
            by_category: HashMap::new(),
        })
    };
    let mut rows: Vec<(&str, Timed, &str)> = Vec::new();
    if runs(Part::A) {
        let a = timed(stateless(true)?, &pool, cfg, idle).await?;
        let a_all = timed(stateless(false)?, &pool, cfg, idle).await?;
        rows.push(("(a) stateless decode+filter+enrich", a, ">= 500000"));
        rows.push(("    same, every event decoded first", a_all, "-"));
    }
    if runs(Part::B) {
        let b = timed(TopN { windows_fired: 0 }, &pool, cfg, idle).await?;
        rows.push(("(b) hopping 5m/1m top-10 products", b, ">= 100000"));
    }
    let mut latency = None;
    if runs(Part::C) || runs(Part::D) {
        let rules = load_rules(&pool).await?;
        let fraud = FraudDetector::new(rules.clone(), Model::builtin(), Thresholds::default());
        let c = timed(fraud, &pool, cfg, idle).await?;
        if runs(Part::C) {
            rows.push(("(c) fraud scoring (rules + model)", c, "-"));
        }
        if runs(Part::D) {
            latency = Some(alert_latency(cfg, &pool, rules, args.alerts).await?);
        }
    }

    println!();
    println!(
        "{:<38} {:>9} {:>11} {:>11} {:>11} {:>6} {:>10}",
        "benchmark", "events", "ev/s wall", "ev/s active", "ev/CPU-s", "cores", "target"
    );
    for (name, t, target) in &rows {
        println!(
            "{:<38} {:>9} {:>11.0} {:>11.0} {:>11.0} {:>6.2} {:>10}",
            name, t.report.processed, t.wall, t.active, t.per_cpu, t.cores, target
        );
    }
    println!(
        "ev/s wall counts start-up (group join) too; ev/s active is the processing span; \
         ev/CPU-s is per core of this process (librdkafka threads included, the broker not)"
    );
    for (name, t, _) in &rows {
        if t.report.filtered > 0 {
            println!(
                "{}: {} of {} events filtered by ce_type, not decoded",
                name.trim(),
                t.report.filtered,
                t.report.processed
            );
        }
    }
    if let Some((received, sent, p50, p99)) = latency {
        println!(
            "(d) produce -> alert in review queue: {received} of {sent} alerts, p50 {p50:.1} ms, p99 {p99:.1} ms (target p99 < 250 ms)"
        );
    }
    Ok(())
}

/// (d) Latency: a live fraud processor; orders that must alert, one every 20 ms. Returns the
/// alerts received, sent, and p50/p99 in milliseconds.
async fn alert_latency(
    cfg: &Config,
    pool: &PgPool,
    rules: Vec<streams::fraud::Rule>,
    alerts: usize,
) -> anyhow::Result<(usize, usize, f64, f64)> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = {
        let (pool, mut e) = (pool.clone(), EngineConfig::new(cfg.kafka.clone()));
        e.checkpoint_every = Duration::from_millis(200);
        let p = FraudDetector::new(rules, Model::builtin(), Thresholds::default());
        tokio::spawn(async move { engine::run(p, pool, e, stopped(stop_rx)).await })
    };
    // Warm-up: the processor loads (c)'s checkpointed state first; measure once it has
    // raised an alert for a first order, so start-up is not counted as alert latency.
    let producer = EventProducer::new(&cfg.kafka)?;
    let warm = suspicious_order();
    producer
        .publish(&Envelope::new("/bench", warm.clone()))
        .await?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let raised: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM streams.fraud_alerts WHERE order_id = $1)",
        )
        .bind(warm.order_id)
        .fetch_one(pool)
        .await?;
        if raised {
            break;
        }
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the live fraud processor raised no alert for the warm-up order within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sent = Vec::new();
    for _ in 0..alerts {
        let order = suspicious_order();
        let env = Envelope::new("/bench", order.clone());
        producer.publish(&env).await?;
        sent.push(order.order_id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lat: Vec<f64> = Vec::new();
    while Instant::now() < deadline {
        let rows: Vec<(f64,)> = sqlx::query_as(
            "SELECT EXTRACT(EPOCH FROM (raised_at - event_time))::float8 * 1000 FROM streams.fraud_alerts
             WHERE order_id = ANY($1)",
        )
        .bind(&sent)
        .fetch_all(pool)
        .await?;
        lat = rows.into_iter().map(|r| r.0).collect();
        if lat.len() == sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_tx.send(true);
    live.await?.context("live fraud processor")?;
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok((lat.len(), sent.len(), pct(0.5), pct(0.99)))
}

/// A new account's order shipped abroad on a foreign card: the country-mismatch rule fires.
fn suspicious_order() -> OrderPlaced {
    let price = Money::new(25_000, Currency::EUR);
    OrderPlaced {
        order_id: Uuid::now_v7(),
        customer_id: Uuid::now_v7(),
        lines: vec![OrderLine {
            product_id: Uuid::now_v7(),
            sku: Sku::parse("BENCH-1").expect("valid sku"),
            quantity: Quantity::MIN,
            unit_price: price,
        }],
        subtotal: price,
        discount: Money::new(0, Currency::EUR),
        shipping: Money::new(0, Currency::EUR),
        tax: Money::new(0, Currency::EUR),
        total: price,
        coupon: None,
        card: CardRef {
            fingerprint: format!("bench-{}", Uuid::now_v7().simple()),
            bin: "424242".into(),
            last4: "4242".into(),
            country: Country::parse("BR").expect("valid country"),
        },
        billing_country: Country::parse("DE").expect("valid country"),
        shipping_country: Country::parse("US").expect("valid country"),
        ip: "203.0.113.9".into(),
        device_id: "bench-device".into(),
    }
}
