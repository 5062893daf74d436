//! Stream processors against the real broker and PostgreSQL: exact aggregates against the
//! simulator's ground truth, DLQ routing, idempotent restarts, and fraud detection quality on
//! the simulator's labelled traffic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use events::{Envelope, Event};
use ingest::simulate::{FraudKind, Generator, GroundTruth, SimConfig};
use ingest::{EventProducer, KafkaConfig, TopicAdmin};
use rdkafka::message::OwnedHeaders;
use sqlx::PgPool;
use streams::aggregate::Aggregator;
use streams::fraud::{FraudDetector, Model, Thresholds, load_rules};
use streams::table::{Customers, Products};
use streams::{EngineConfig, engine};

async fn kafka() -> KafkaConfig {
    let mut cfg = KafkaConfig::default();
    if let Ok(b) = std::env::var("SHOPSTREAM_KAFKA_BROKERS") {
        cfg.brokers = b;
    }
    cfg.topic_prefix = format!("it-{}.", uuid::Uuid::now_v7().simple());
    TopicAdmin::new(&cfg)
        .unwrap()
        .apply(&cfg.topic_names().plan())
        .await
        .expect("the local Kafka broker is up (deploy/local/stack.sh up)");
    cfg
}

async fn cleanup(cfg: &KafkaConfig) {
    let names: Vec<String> = cfg
        .topic_names()
        .plan()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    TopicAdmin::new(cfg).unwrap().delete(&refs).await.unwrap();
}

async fn produce(cfg: &KafkaConfig, events: &[Envelope]) {
    let p = EventProducer::new(cfg).unwrap();
    for chunk in events.chunks(5_000) {
        p.publish_all(chunk).await.unwrap();
    }
}

fn engine_cfg(kafka: &KafkaConfig) -> EngineConfig {
    let mut c = EngineConfig::new(kafka.clone());
    c.stop_when_idle = Some(Duration::from_secs(3));
    c
}

async fn migrated(pool: &PgPool) {
    ingest::outbox::migrator().run(pool).await.unwrap();
    streams::migrator().run(pool).await.unwrap();
}

fn sim(seed: u64, fraud_rate: f64) -> SimConfig {
    SimConfig {
        seed,
        products: 300,
        customers: 5_000,
        sessions_per_sec: 1.0,
        fraud_rate,
        ..SimConfig::default()
    }
}

/// How many of `events` the aggregator reads (its input topics).
fn aggregated(events: &[Envelope]) -> u64 {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.event.topic(),
                events::Topic::Clickstream
                    | events::Topic::Carts
                    | events::Topic::Orders
                    | events::Topic::Payments
            )
        })
        .count() as u64
}

/// Confirmed orders per minute: (count, sum of totals in minor units).
fn truth_orders_per_minute(events: &[Envelope]) -> BTreeMap<i64, (i64, i64)> {
    let mut m = BTreeMap::new();
    for e in events {
        if let Event::OrderConfirmed(o) = &e.event {
            let t = e.time.timestamp_millis();
            let e = m.entry(t - t.rem_euclid(60_000)).or_insert((0, 0));
            e.0 += 1;
            e.1 += o.total.amount_minor;
        }
    }
    m
}

async fn orders_per_minute(pool: &PgPool) -> BTreeMap<i64, (i64, i64)> {
    let rows: Vec<(chrono::DateTime<chrono::Utc>, i64, i64)> = sqlx::query_as(
        "SELECT window_start, count, sum FROM streams.metrics WHERE metric = 'orders' AND dims = 'EUR'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(t, c, s)| (t.timestamp_millis(), (c, s)))
        .collect()
}

#[sqlx::test(migrations = false)]
async fn aggregates_equal_the_ground_truth_across_restarts_and_bad_records_go_to_the_dlq(
    pool: PgPool,
) {
    migrated(&pool).await;
    let k = kafka().await;
    let events: Vec<Envelope> = Generator::new(sim(3, 0.02)).take(20_000).collect();
    let (first, second) = events.split_at(12_000);
    produce(&k, first).await;
    // A record no contract decodes, in the middle of the orders topic.
    let orders_topic = k.topic_names().name(events::Topic::Orders);
    EventProducer::new(&k)
        .unwrap()
        .send_raw(
            &orders_topic,
            Some(b"x"),
            Some(b"{not json"),
            OwnedHeaders::new(),
        )
        .await
        .unwrap();

    // First run: part of the stream, then stop (a restart from the checkpoint follows).
    let products = Products::load(&k).unwrap();
    let r1 = engine::run(
        Aggregator::new(Some(products), 0).with_customers(Customers::load(&k).unwrap()),
        pool.clone(),
        engine_cfg(&k),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(r1.dead_lettered, 1, "{r1:?}");
    assert!(r1.processed > 0 && r1.late == 0, "{r1:?}");

    produce(&k, second).await;
    let r2 = engine::run(
        Aggregator::new(Products::load(&k).ok(), 0).with_customers(Customers::load(&k).unwrap()),
        pool.clone(),
        engine_cfg(&k),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(
        r2.dead_lettered, 0,
        "the bad record is not seen twice: {r2:?}"
    );
    let relevant = aggregated(&events);
    assert_eq!(
        r1.processed + r2.processed,
        relevant,
        "every event processed exactly once"
    );

    let truth = truth_orders_per_minute(&events);
    assert!(truth.len() > 30, "enough minutes to be meaningful");
    assert_eq!(orders_per_minute(&pool).await, truth);

    // Funnel and payment metrics exist and add up.
    let paid: i64 = sqlx::query_scalar("SELECT sum(count)::bigint FROM streams.metrics WHERE metric = 'funnel' AND dims = '4_paid'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(paid, truth.values().map(|v| v.0).sum::<i64>());
    let failed_truth = events
        .iter()
        .filter(|e| matches!(e.event, Event::PaymentFailed(_)))
        .count() as i64;
    let failed: i64 = sqlx::query_scalar(
        "SELECT sum(sum)::bigint FROM streams.metrics WHERE metric = 'payments'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failed, failed_truth);

    // Revenue by account age: orders joined with the customer's registration from `users`.
    let mut registered = std::collections::HashMap::new();
    let mut age_truth: BTreeMap<String, i64> = BTreeMap::new();
    for e in &events {
        match &e.event {
            Event::UserRegistered(u) => {
                registered.insert(u.user_id, u.registered_at);
            }
            Event::OrderConfirmed(o) => {
                let segment = match registered.get(&o.customer_id) {
                    Some(at)
                        if (e.time - *at).num_days() < streams::aggregate::NEW_ACCOUNT_DAYS =>
                    {
                        "new"
                    }
                    Some(_) => "established",
                    None => "unknown",
                };
                *age_truth.entry(segment.into()).or_default() += o.total.amount_minor;
            }
            _ => {}
        }
    }
    assert!(
        age_truth.contains_key("new") && age_truth.contains_key("established"),
        "{age_truth:?}"
    );
    let by_age: Vec<(String, i64)> = sqlx::query_as(
        "SELECT dims, sum(sum)::bigint FROM streams.metrics WHERE metric = 'revenue_by_account_age' GROUP BY dims",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(by_age.into_iter().collect::<BTreeMap<_, _>>(), age_truth);

    // A third run finds nothing new and changes nothing.
    let r3 = engine::run(
        Aggregator::new(None, 0),
        pool.clone(),
        engine_cfg(&k),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(r3.processed, 0, "{r3:?}");
    assert_eq!(orders_per_minute(&pool).await, truth);
    cleanup(&k).await;
}

/// The aggregator, except that once it has read `after` records its checkpoints are taken
/// over (their versions bumped, as a newer owner's saves would): its next checkpoint is fenced
/// and drops every unsaved shard.
struct Overtaken {
    inner: Aggregator,
    db: sqlx::postgres::PgConnectOptions,
    seen: u64,
    after: u64,
    done: bool,
}

impl engine::Processor for Overtaken {
    type State = <Aggregator as engine::Processor>::State;
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn mode(&self) -> engine::Mode {
        self.inner.mode()
    }
    fn inputs(&self) -> Vec<events::Topic> {
        self.inner.inputs()
    }
    fn new_state(&self) -> Self::State {
        self.inner.new_state()
    }
    fn on_event(&mut self, st: &mut Self::State, input: &engine::In<'_>, out: &mut engine::Out) {
        self.seen += 1;
        self.inner.on_event(st, input, out);
    }
    fn on_watermark(
        &mut self,
        st: &mut Self::State,
        wm: streams::window::Millis,
        out: &mut engine::Out,
    ) {
        self.inner.on_watermark(st, wm, out);
    }
    fn on_checkpoint(&mut self, st: &mut Self::State, shard: &str, out: &mut engine::Out) {
        self.inner.on_checkpoint(st, shard, out);
    }
    fn between_batches(&mut self) {
        self.inner.between_batches();
        if self.done || self.seen < self.after {
            return;
        }
        self.done = true;
        let db = self.db.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let pool = PgPool::connect_with(db).await.unwrap();
                let n = sqlx::query("UPDATE streams.checkpoints SET version = version + 1")
                    .execute(&pool)
                    .await
                    .unwrap()
                    .rows_affected();
                assert!(n > 0, "no checkpoints to take over");
            })
        })
        .join()
        .unwrap();
    }
}

/// A checkpoint fenced at the end of the input: the dropped shards are read again from their
/// checkpoints, though no new record will ever arrive to bring them back.
#[sqlx::test(migrations = false)]
async fn a_fenced_checkpoint_at_the_end_of_the_input_rereads_what_it_dropped(pool: PgPool) {
    migrated(&pool).await;
    let k = kafka().await;
    let events: Vec<Envelope> = Generator::new(sim(11, 0.0)).take(12_000).collect();
    let (first, second) = events.split_at(6_000);
    produce(&k, first).await;
    let r1 = engine::run(
        Aggregator::new(Products::load(&k).ok(), 0),
        pool.clone(),
        engine_cfg(&k),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(r1.checkpoints > 0, "{r1:?}");
    produce(&k, second).await;
    let relevant = aggregated(second);
    // No periodic checkpoint: everything read is unsaved when the takeover comes.
    let mut cfg = engine_cfg(&k);
    cfg.checkpoint_every = Duration::from_secs(3600);
    let r2 = engine::run(
        Overtaken {
            inner: Aggregator::new(Products::load(&k).ok(), 0),
            db: (*pool.connect_options()).clone(),
            seen: 0,
            after: relevant,
            done: false,
        },
        pool.clone(),
        cfg,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(r2.fenced > 0, "the takeover fenced a checkpoint: {r2:?}");
    assert!(
        r2.processed >= 2 * relevant,
        "the dropped work was read again: {r2:?}"
    );
    assert_eq!(
        orders_per_minute(&pool).await,
        truth_orders_per_minute(&events)
    );
    cleanup(&k).await;
}

/// Sets a consumer group's committed offsets of `topic` back to the start, as when the commit
/// after a checkpoint was lost (it is asynchronous: a SIGKILL or a rebalance can drop it).
fn lose_commits(cfg: &KafkaConfig, group: &str, topic: events::Topic) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = cfg.client_config().set("group.id", group).create().unwrap();
    let name = cfg.topic_names().name(topic);
    let md = consumer
        .fetch_metadata(Some(&name), Duration::from_secs(10))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(&name, p.id(), rdkafka::Offset::Offset(0))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// The group's committed offsets trail the checkpoints (a commit lost in a crash or a
/// rebalance): the orders partitions are re-delivered from the start and skipped below their
/// checkpoints, while the other topics' newer records move far ahead in event time. A shard
/// that has seen no record of its own since must keep its watermark: taking the others'
/// would fire its windows early and make its next records late, though its own partition
/// never passed them (this lost orders in the two-instance SIGKILL test).
#[sqlx::test(migrations = false)]
async fn records_skipped_below_a_checkpoint_do_not_move_its_watermark(pool: PgPool) {
    migrated(&pool).await;
    let k = kafka().await;
    let events: Vec<Envelope> = Generator::new(sim(13, 0.0)).take(40_000).collect();
    let (first, second) = events.split_at(20_000);
    let is_order = |e: &&Envelope| e.event.topic() == events::Topic::Orders;
    let (orders, rest): (Vec<Envelope>, Vec<Envelope>) =
        second.iter().cloned().partition(|e| is_order(&e));
    assert!(!orders.is_empty());
    let aggregator = || Aggregator::new(Products::load(&k).ok(), 0);
    let run = || {
        engine::run(
            aggregator(),
            pool.clone(),
            engine_cfg(&k),
            std::future::pending(),
        )
    };
    produce(&k, first).await;
    let r1 = run().await.unwrap();
    assert!(r1.checkpoints > 0 && r1.late == 0, "{r1:?}");
    lose_commits(
        &k,
        &engine_cfg(&k).group("aggregate"),
        events::Topic::Orders,
    );
    // The other topics move on first (an outbox relay of orders that lags behind, say).
    produce(&k, &rest).await;
    let r2 = run().await.unwrap();
    assert!(
        r2.skipped_replayed > 0,
        "the orders were re-delivered: {r2:?}"
    );
    assert_eq!(r2.late, 0, "{r2:?}");
    produce(&k, &orders).await;
    let r3 = run().await.unwrap();
    assert_eq!(
        r3.late, 0,
        "the orders' own partitions never passed them: {r3:?}"
    );
    assert_eq!(
        orders_per_minute(&pool).await,
        truth_orders_per_minute(&events)
    );
    cleanup(&k).await;
}

fn detector(rules: Vec<streams::fraud::Rule>) -> FraudDetector {
    FraudDetector::new(rules, Model::builtin(), Thresholds::default())
}

#[sqlx::test(migrations = false)]
async fn fraud_detection_finds_each_injected_pattern_with_high_precision_and_one_alert_per_order(
    pool: PgPool,
) {
    migrated(&pool).await;
    let k = kafka().await;
    let mut g = Generator::new(sim(17, 0.06));
    let events: Vec<Envelope> = g.by_ref().take(60_000).collect();
    let labels: Vec<_> = g
        .take_labels()
        .into_iter()
        .filter_map(|l| match l {
            GroundTruth::Fraud(f) => Some(f),
            GroundTruth::Anomaly(_) => None,
        })
        .collect();
    let placed: HashSet<uuid::Uuid> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::OrderPlaced(o) => Some(o.order_id),
            _ => None,
        })
        .collect();
    // Only cases whose orders were all generated within the slice.
    let labels: Vec<_> = labels
        .into_iter()
        .filter(|l| l.order_ids.iter().all(|o| placed.contains(o)))
        .collect();
    produce(&k, &events).await;
    let rules = load_rules(&pool).await.unwrap();
    let report = engine::run(
        detector(rules.clone()),
        pool.clone(),
        engine_cfg(&k),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(report.processed > 0);

    let alerts: Vec<(uuid::Uuid, Vec<String>)> =
        sqlx::query_as("SELECT order_id, rules_fired FROM streams.fraud_alerts")
            .fetch_all(&pool)
            .await
            .unwrap();
    let alerted: HashMap<uuid::Uuid, Vec<String>> = alerts.iter().cloned().collect();
    let order_kind: HashMap<uuid::Uuid, FraudKind> = labels
        .iter()
        .flat_map(|l| l.order_ids.iter().map(move |o| (*o, l.kind)))
        .collect();
    // A false alert is charged to the pattern its strongest rule stands for.
    let pattern_of_rule = |r: &str| match r {
        "card_testing" | "declines_customer" => Some(FraudKind::CardTesting),
        "account_takeover" => Some(FraudKind::AccountTakeover),
        "velocity_customer" | "velocity_ip" | "new_account" | "new_account_high_value" => {
            Some(FraudKind::VelocityBurst)
        }
        "country_mismatch" => Some(FraudKind::CountryMismatch),
        "shared_card" | "shared_device" => Some(FraudKind::SharedCard),
        _ => None,
    };
    let weight: HashMap<&str, f64> = rules.iter().map(|r| (r.id.as_str(), r.weight)).collect();
    let mut table = String::new();
    let mut failures = Vec::new();
    for kind in FraudKind::ALL {
        let cases: Vec<_> = labels.iter().filter(|l| l.kind == kind).collect();
        let found = cases
            .iter()
            .filter(|l| l.order_ids.iter().any(|o| alerted.contains_key(o)))
            .count();
        let tp = alerts
            .iter()
            .filter(|(o, _)| order_kind.get(o) == Some(&kind))
            .count();
        let fp = alerts
            .iter()
            .filter(|(o, rules)| {
                !order_kind.contains_key(o)
                    && rules
                        .iter()
                        .max_by(|a, b| weight[a.as_str()].total_cmp(&weight[b.as_str()]))
                        .and_then(|r| pattern_of_rule(r))
                        == Some(kind)
            })
            .count();
        let recall = found as f64 / cases.len().max(1) as f64;
        let precision = tp as f64 / (tp + fp).max(1) as f64;
        table += &format!(
            "{kind:?}: cases {} found {found} recall {recall:.3}; alerts {tp} true {fp} false, precision {precision:.3}\n",
            cases.len()
        );
        if cases.len() < 3 || recall < 0.9 || precision < 0.9 {
            failures.push(kind);
        }
    }
    let false_total = alerts
        .iter()
        .filter(|(o, _)| !order_kind.contains_key(o))
        .count();
    table += &format!(
        "all: {} alerts, {false_total} on orders outside any label\n",
        alerts.len()
    );
    println!("{table}");
    assert!(
        failures.is_empty(),
        "below 0.9 (or too few cases) for {failures:?}:\n{table}"
    );

    // Replaying everything (lost checkpoint) raises no second alert for any order.
    sqlx::query("DELETE FROM streams.checkpoints")
        .execute(&pool)
        .await
        .unwrap();
    let again = engine::run(
        detector(rules),
        pool.clone(),
        engine_cfg(&k),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(again.processed, report.processed);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM streams.fraud_alerts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n as usize, alerts.len());
    cleanup(&k).await;
}

#[test]
fn the_fraud_model_feed_follows_registry_promotions() {
    use streams::fraud::ModelFeed;
    let dir = std::env::temp_dir().join(format!("fraud-feed-{}", uuid::Uuid::now_v7()));
    let write = |v: &str, bias: f64| {
        std::fs::create_dir_all(dir.join(v)).unwrap();
        let m =
            serde_json::json!({"version": "staged", "bias": bias, "weights": {"new_account": 1.0}});
        std::fs::write(dir.join(v).join("model.json"), m.to_string()).unwrap();
        std::fs::write(dir.join("promoted"), v).unwrap();
    };
    let mut feed = ModelFeed::new(&dir, Duration::ZERO);
    assert!(feed.poll().is_none(), "nothing promoted yet");
    write("v1", -3.0);
    let m = feed.poll().expect("v1");
    assert_eq!((m.version.as_str(), m.bias), ("fraud/v1", -3.0));
    assert!(feed.poll().is_none(), "unchanged");
    write("v2", -2.0);
    let rules = Vec::new();
    let mut detector = FraudDetector::new(rules, Model::builtin(), Thresholds::default())
        .with_model_feed(ModelFeed::new(&dir, Duration::ZERO));
    assert_eq!(detector.model().version, "fraud/v2", "used from the start");
    // A broken promotion keeps the model in use.
    std::fs::create_dir_all(dir.join("v3")).unwrap();
    std::fs::write(dir.join("v3").join("model.json"), "{").unwrap();
    std::fs::write(dir.join("promoted"), "v3").unwrap();
    use streams::Processor;
    detector.between_batches();
    assert_eq!(detector.model().version, "fraud/v2");
    write("v4", -1.0);
    detector.between_batches();
    assert_eq!(detector.model().version, "fraud/v4");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Counts what reaches it; wants product views only.
struct ViewsOnly {
    views: std::sync::Arc<std::sync::atomic::AtomicU64>,
    others: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl engine::Processor for ViewsOnly {
    type State = ();
    fn name(&self) -> &'static str {
        "views-only"
    }
    fn mode(&self) -> engine::Mode {
        engine::Mode::Partitioned
    }
    fn inputs(&self) -> Vec<events::Topic> {
        vec![events::Topic::Clickstream]
    }
    fn new_state(&self) {}
    fn wants(&self, event_type: &str) -> bool {
        event_type == <events::domain::clickstream::ProductViewed as events::DomainEvent>::TYPE
    }
    fn on_event(&mut self, _: &mut (), input: &engine::In<'_>, _: &mut engine::Out) {
        use std::sync::atomic::Ordering::Relaxed;
        match input.envelope.event {
            Event::ProductViewed(_) => self.views.fetch_add(1, Relaxed),
            _ => self.others.fetch_add(1, Relaxed),
        };
    }
    fn on_watermark(&mut self, _: &mut (), _: streams::window::Millis, _: &mut engine::Out) {}
}

/// Records of types a processor does not want are counted and move its event-time clock, but
/// are neither decoded nor handed to it; a record without headers is still dead-lettered.
#[sqlx::test(migrations = false)]
async fn unwanted_event_types_are_skipped_undecoded_but_move_the_watermark(pool: PgPool) {
    use events::domain::clickstream::{ProductViewed, SearchPerformed};
    use std::sync::atomic::Ordering::Relaxed;
    migrated(&pool).await;
    let k = kafka().await;
    // One session, so one partition: three views, then searches ten minutes later.
    let session = uuid::Uuid::now_v7();
    let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut sent = Vec::new();
    for i in 0..3 {
        let view = ProductViewed {
            session_id: session,
            user_id: None,
            product_id: uuid::Uuid::now_v7(),
            device_id: "d".into(),
            referrer: None,
        };
        sent.push(Envelope::new("/it", view).with_time(t0 + chrono::Duration::seconds(i)));
    }
    let last = t0 + chrono::Duration::minutes(10) + chrono::Duration::seconds(4);
    for i in 0..5 {
        let search = SearchPerformed {
            session_id: session,
            user_id: None,
            query: "boots".into(),
            category: None,
            results_count: 3,
        };
        sent.push(Envelope::new("/it", search).with_time(last - chrono::Duration::seconds(i)));
    }
    produce(&k, &sent).await;
    let p = EventProducer::new(&k).unwrap();
    let topic = k.topic_names().name(events::Topic::Clickstream);
    // A search's headers over a payload no contract decodes: not wanted, so never decoded.
    p.send_raw(
        &topic,
        Some(session.to_string().as_bytes()),
        Some(b"{not json"),
        ingest::kafka::envelope_headers(&sent[4]),
    )
    .await
    .unwrap();
    // No headers at all: the type is unknown, so it is decoded and dead-lettered.
    p.send_raw(
        &topic,
        Some(session.to_string().as_bytes()),
        Some(b"{}"),
        OwnedHeaders::new(),
    )
    .await
    .unwrap();

    let (views, others) = Default::default();
    let processor = ViewsOnly {
        views: std::sync::Arc::clone(&views),
        others: std::sync::Arc::clone(&others),
    };
    let cfg = engine_cfg(&k);
    let group = cfg.group("views-only");
    let bound = cfg.watermark_bound.as_millis() as i64;
    let r = engine::run(processor, pool.clone(), cfg, std::future::pending())
        .await
        .unwrap();
    assert_eq!((views.load(Relaxed), others.load(Relaxed)), (3, 0), "{r:?}");
    assert_eq!(
        (r.processed, r.filtered, r.dead_lettered),
        (9, 6, 1),
        "{r:?}"
    );
    let wm: Option<i64> =
        sqlx::query_scalar("SELECT max(watermark) FROM streams.checkpoints WHERE processor = $1")
            .bind(&group)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        wm,
        Some(last.timestamp_millis() - bound),
        "the searches' times moved the clock"
    );
    cleanup(&k).await;
}
