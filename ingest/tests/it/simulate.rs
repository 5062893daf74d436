//! The simulator: deterministic per seed, labels that match what was injected, and direct
//! mode events that decode with the contract after a trip through the broker.

use std::collections::{HashMap, HashSet};

use events::{Event, Topic};
use ingest::simulate::{FraudKind, Generator, SimConfig, run_direct};
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
    let labels = g.take_labels();
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
