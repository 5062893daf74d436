//! The simulator: deterministic per seed, labels that match what was injected, and direct
//! mode events that decode with the contract after a trip through the broker.

use std::collections::{HashMap, HashSet};

use events::domain::payments::DeclineReason;
use events::{Event, Topic};
use ingest::simulate::{AnomalyKind, FraudKind, Generator, GroundTruth, SimConfig, run_direct};
use ingest::{ConsumerOptions, DurableConsumer};

use crate::support::{TestKafka, VecSink, drain};

fn small(seed: u64, fraud_rate: f64) -> SimConfig {
    SimConfig {
        seed,
        products: 300,
        customers: 1_000,
        fraud_rate,
        ..SimConfig::default()
    }
}

fn fingerprint(n: usize, cfg: SimConfig) -> Vec<(uuid::Uuid, &'static str, String, Vec<u8>)> {
    Generator::new(cfg)
        .take(n)
        .map(|e| (e.id, e.event_type(), e.key(), e.payload()))
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_events() {
    let a = fingerprint(20_000, small(7, 0.05));
    assert_eq!(a, fingerprint(20_000, small(7, 0.05)));
    assert_ne!(a, fingerprint(20_000, small(8, 0.05)));
    let types: HashSet<&str> = a.iter().map(|e| e.1).collect();
    for t in [
        "product.created.v1",
        "user.registered.v1",
        "product.viewed.v1",
        "order.placed.v1",
        "payment.authorized.v1",
        "payment.failed.v1",
        "order.confirmed.v1",
    ] {
        assert!(types.contains(t), "{t} never generated");
    }
    // Event time never runs backwards past the catalog seeding.
    let times: Vec<_> = Generator::new(small(7, 0.05))
        .take(20_000)
        .map(|e| e.time)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn every_label_matches_the_events_it_describes() {
    let mut g = Generator::new(small(11, 0.3));
    let stream: Vec<_> = g.by_ref().take(60_000).collect();
    let labels: Vec<_> = g
        .take_labels()
        .into_iter()
        .filter_map(|l| match l {
            GroundTruth::Fraud(f) => Some(f),
            GroundTruth::Anomaly(_) => None,
        })
        .collect();
    let kinds: HashSet<FraudKind> = labels.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds.len(),
        FraudKind::ALL.len(),
        "every kind injected: {kinds:?}"
    );

    let mut placed = HashMap::new();
    let mut failed = HashSet::new();
    for e in &stream {
        match &e.event {
            Event::OrderPlaced(o) => {
                placed.insert(o.order_id, o.clone());
            }
            Event::PaymentFailed(p) => {
                failed.insert(p.order_id);
            }
            _ => {}
        }
    }
    for l in &labels {
        let orders: Vec<_> = l.order_ids.iter().filter_map(|id| placed.get(id)).collect();
        if orders.len() < l.order_ids.len() {
            continue; // the injection straddles the end of the sample
        }
        assert!(!orders.is_empty(), "{l:?}");
        for o in &orders {
            assert_eq!(o.card.fingerprint, l.card_fingerprint, "{:?}", l.kind);
            assert!(l.customer_ids.contains(&o.customer_id), "{:?}", l.kind);
        }
        match l.kind {
            FraudKind::CardTesting => {
                let declined = l.order_ids.iter().filter(|id| failed.contains(id)).count();
                assert!(
                    declined >= 5 && declined == l.order_ids.len() - 1,
                    "{declined} of {}",
                    l.order_ids.len()
                );
            }
            FraudKind::VelocityBurst => assert!(orders.len() >= 6),
            FraudKind::SharedCard => {
                assert!(l.customer_ids.len() >= 4);
                let devices: HashSet<_> = orders.iter().map(|o| o.device_id.clone()).collect();
                assert_eq!(devices.len(), 1);
            }
            FraudKind::CountryMismatch => {
                assert_ne!(orders[0].billing_country, orders[0].shipping_country)
            }
            FraudKind::AccountTakeover => {
                assert_ne!(orders[0].billing_country, orders[0].shipping_country)
            }
        }
    }
}

#[tokio::test]
async fn direct_mode_events_decode_with_the_contract() {
    let k = TestKafka::new().await;
    let dir = std::env::temp_dir().join(format!("sim-labels-{}", uuid::Uuid::now_v7()));
    let report = run_direct(&k.cfg, small(3, 0.05), 5_000, Some(&dir), |_| {}).unwrap();
    assert_eq!(report.events, 5_000);
    assert_eq!(report.failed, 0);
    assert!(report.sessions > 0 && report.orders > 0, "{report:?}");
    assert_eq!(
        report.orders,
        report
            .by_type
            .get("order.confirmed.v1")
            .copied()
            .unwrap_or(0)
    );
    assert!(report.revenue_minor["EUR"] > 0);
    assert_eq!(report.fraud_cases + report.anomalies, report.labels);
    let label_lines = std::fs::read_to_string(&dir).unwrap().lines().count();
    assert_eq!(label_lines, report.labels);
    let _ = std::fs::remove_file(&dir);

    let topics: Vec<String> = Topic::ALL.iter().take(11).map(|t| k.topic(*t)).collect();
    let consumer =
        DurableConsumer::new(&k.cfg, ConsumerOptions::new(k.group("sim"), topics)).unwrap();
    let mut sink = VecSink::default();
    let got = drain(&consumer, &mut sink, 5_000).await;
    assert_eq!(got.dead_lettered, 0);
    assert_eq!(sink.records.len(), 5_000);
    k.cleanup().await;
}

#[test]
fn injected_anomalies_show_in_the_traffic_and_are_labelled() {
    use chrono::TimeZone;
    let cfg = SimConfig {
        anomaly_every_secs: 300,
        anomaly_secs: 200,
        // Start in the afternoon so the windows see busy traffic.
        start: chrono::Utc.with_ymd_and_hms(2026, 11, 2, 14, 0, 0).unwrap(),
        ..small(5, 0.0)
    };
    let mut g = Generator::new(cfg);
    let stream: Vec<_> = g.by_ref().take(500_000).collect();
    let category_of: HashMap<uuid::Uuid, &str> = g
        .world()
        .products
        .iter()
        .map(|p| (p.id, p.category))
        .collect();
    let price_of: HashMap<uuid::Uuid, i64> = g
        .world()
        .products
        .iter()
        .map(|p| (p.id, p.price.amount_minor))
        .collect();
    let anomalies: Vec<_> = g
        .take_labels()
        .into_iter()
        .filter_map(|l| match l {
            GroundTruth::Anomaly(a) => Some(a),
            GroundTruth::Fraud(_) => None,
        })
        .collect();
    let kinds: HashSet<AnomalyKind> = anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds.len(), AnomalyKind::ALL.len(), "{kinds:?}");

    let within = |t, a: &ingest::simulate::AnomalyLabel| t >= a.from && t < a.to;
    let mut session_start = HashMap::new();
    for e in &stream {
        if let Event::ProductViewed(v) = &e.event {
            session_start.entry(v.session_id).or_insert(e.time);
        }
    }
    let mut glitched_lines = 0;
    for a in &anomalies {
        match a.kind {
            AnomalyKind::GatewayOutage => {} // judged over all outages below
            AnomalyKind::PricingGlitch => {
                let product: uuid::Uuid = a.subject.as_ref().unwrap().parse().unwrap();
                let normal = price_of[&product];
                for e in &stream {
                    if let Event::OrderPlaced(o) = &e.event {
                        for l in o.lines.iter().filter(|l| l.product_id == product) {
                            let expected = if within(e.time, a) {
                                (normal / 100).max(1)
                            } else {
                                normal
                            };
                            assert_eq!(l.unit_price.amount_minor, expected, "at {}", e.time);
                            glitched_lines += usize::from(within(e.time, a));
                        }
                    }
                }
                let changes: Vec<_> = stream
                    .iter()
                    .filter(|e| e.time >= a.from)
                    .filter_map(|e| match &e.event {
                        Event::PriceChanged(p) if p.product_id == product => {
                            Some(p.new_price.amount_minor)
                        }
                        _ => None,
                    })
                    .take(2)
                    .collect();
                assert_eq!(
                    changes,
                    [(normal / 100).max(1), normal],
                    "glitch, then correction"
                );
            }
            // Sessions are generated when they start: judge them by their start.
            AnomalyKind::StalledCategory => {
                let category = a.subject.as_deref().unwrap();
                let views = stream
                    .iter()
                    .filter(|e| matches!(&e.event, Event::ProductViewed(v)
                        if category_of[&v.product_id] == category && within(session_start[&v.session_id], a)))
                    .count();
                assert_eq!(views, 0, "{category} should be stalled");
            }
            AnomalyKind::TrafficSpike => {
                let span = a.to - a.from;
                let started = |from, to| {
                    session_start
                        .values()
                        .filter(|t| **t >= from && **t < to)
                        .count()
                };
                let before = started(a.from - span, a.from);
                let during = started(a.from, a.to);
                assert!(
                    during > 3 * before,
                    "spike {during} sessions vs {before} before"
                );
            }
        }
    }
    // Gateway outages: most payments fail as unavailable inside them, almost none outside.
    let outages: Vec<_> = anomalies
        .iter()
        .filter(|a| a.kind == AnomalyKind::GatewayOutage)
        .collect();
    let (mut inside, mut outside) = ((0, 0), (0, 0));
    for e in &stream {
        let (failed, counted) = match &e.event {
            Event::PaymentFailed(p) => (p.reason == DeclineReason::GatewayUnavailable, true),
            Event::PaymentAuthorized(_) => (false, true),
            _ => (false, false),
        };
        if counted {
            let bucket = if outages.iter().any(|a| within(e.time, a)) {
                &mut inside
            } else {
                &mut outside
            };
            bucket.0 += usize::from(failed);
            bucket.1 += 1;
        }
    }
    assert!(glitched_lines > 0, "no order ever saw a glitched price");
    assert!(
        inside.1 >= 10,
        "too few payments during outages to judge: {inside:?}"
    );
    assert!(inside.0 * 2 > inside.1, "outage failures {inside:?}");
    assert_eq!(
        outside.0, 0,
        "gateway failures outside outages: {outside:?}"
    );
}

#[test]
fn product_pictures_follow_colour_pattern_and_category() {
    use ingest::simulate::images;
    let g = Generator::new(small(9, 0.0));
    let products = &g.world().products;
    let decode = |bytes: &[u8]| {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (images::SIZE, images::SIZE));
        buf
    };
    let first = &products[0];
    let bytes = images::png(first, 9).unwrap();
    assert_eq!(
        bytes,
        images::png(first, 9).unwrap(),
        "same seed, same picture"
    );
    let px = decode(&bytes);
    // The corner shows the product's colour (plus a little noise).
    let corner = &px[..3];
    let want: [i16; 3] = match first.colour {
        "red" => [200, 30, 40],
        "blue" => [30, 70, 200],
        "green" => [40, 160, 60],
        "black" => [25, 25, 25],
        "white" => [235, 235, 235],
        "yellow" => [235, 200, 30],
        "purple" => [130, 40, 160],
        _ => [240, 130, 20],
    };
    let near = corner
        .iter()
        .zip(want)
        .all(|(got, w)| (i16::from(*got) - w).abs() <= 6 || first.pattern != "plain");
    assert!(near, "{corner:?} for {}", first.colour);

    // A twin (same colour, pattern, category; its own noise) looks closer than any product
    // of another colour.
    let distance = |a: &[u8], b: &[u8]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (i64::from(*x) - i64::from(*y)).abs())
            .sum::<i64>()
    };
    for a in products.iter().take(20) {
        let mut twin = a.clone();
        twin.id = uuid::Uuid::from_u128(a.id.as_u128() ^ 0xFFFF);
        let (pa, pt) = (images::render(a, 9), images::render(&twin, 9));
        assert_ne!(pa, pt, "noise differs per product");
        let near = distance(&pa, &pt);
        for other in products.iter().filter(|o| o.colour != a.colour).take(10) {
            let far = distance(&pa, &images::render(other, 9));
            assert!(
                near < far,
                "{} {} {}: twin {near} vs {} {far}",
                a.colour,
                a.pattern,
                a.category,
                other.colour
            );
        }
    }

    let dir = std::env::temp_dir().join(format!("sim-images-{}", uuid::Uuid::now_v7()));
    let files = images::write_all(&products[..5], 9, &dir, |_| {}).unwrap();
    assert_eq!(files.len(), 5);
    assert!(files.iter().all(|f| f.exists()));
    let _ = std::fs::remove_dir_all(dir);
}
