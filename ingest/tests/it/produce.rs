//! Producing envelopes and reading them back with their CloudEvents headers.

use std::time::Duration;

use events::{Envelope, Topic, header, samples};
use ingest::{ConsumerOptions, DurableConsumer, EventProducer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

use crate::support::{TestKafka, VecSink, drain};

#[tokio::test]
async fn every_event_type_round_trips_through_the_broker_with_headers() {
    let k = TestKafka::new().await;
    let producer = EventProducer::new(&k.cfg).unwrap();
    let sent: Vec<Envelope> = samples()
        .into_iter()
        .map(|e| Envelope::new("/shopstream/it", e))
        .collect();
    let deliveries = producer.publish_all(&sent).await.unwrap();
    assert_eq!(deliveries.len(), sent.len());

    let topics: Vec<String> = {
        let mut t: Vec<String> = sent.iter().map(|e| k.topic(e.topic())).collect();
        t.sort();
        t.dedup();
        t
    };
    let consumer =
        DurableConsumer::new(&k.cfg, ConsumerOptions::new(k.group("roundtrip"), topics)).unwrap();
    let mut sink = VecSink::default();
    let report = drain(&consumer, &mut sink, sent.len()).await;
    assert_eq!(report.dead_lettered, 0);
    assert_eq!(sink.records.len(), sent.len());
    for s in &sent {
        let got = sink
            .records
            .iter()
            .find(|r| r.envelope.id == s.id)
            .unwrap_or_else(|| panic!("{} lost", s.event_type()));
        assert_eq!(&got.envelope, s);
        assert_eq!(got.topic, k.topic(s.topic()));
        assert_eq!(got.key.as_deref(), Some(s.key().as_bytes()));
    }
    k.cleanup().await;
}

#[tokio::test]
async fn records_carry_ce_headers_readable_by_any_client() {
    let k = TestKafka::new().await;
    let producer = EventProducer::new(&k.cfg).unwrap();
    let env = Envelope::new("/shopstream/it", samples()[10].clone());
    let d = producer.publish(&env).await.unwrap();

    // A plain consumer, no Shopstream decoding: what kcat or a Java client would see.
    let raw: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &k.cfg.brokers)
        .set("group.id", k.group("raw"))
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(
        &k.topic(Topic::Orders),
        d.partition,
        rdkafka::Offset::Offset(d.offset),
    )
    .unwrap();
    raw.assign(&tpl).unwrap();
    let msg = (0..6)
        .find_map(|_| raw.poll(Duration::from_secs(5)))
        .expect("the record is readable within 30 s")
        .unwrap();
    let headers: Vec<(String, String)> = msg
        .headers()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    let get = |k: &str| headers.iter().find(|h| h.0 == k).map(|h| h.1.clone());
    assert_eq!(get(header::SPECVERSION).as_deref(), Some("1.0"));
    assert_eq!(get(header::TYPE).as_deref(), Some("order.placed.v1"));
    assert_eq!(get(header::ID), Some(env.id.to_string()));
    assert_eq!(
        get(header::CONTENT_TYPE).as_deref(),
        Some("application/json")
    );
    // The one-call lookup the stream engine filters by agrees with walking the headers.
    for name in [header::TYPE, header::TIME, header::ID, header::SOURCE] {
        let c_name = std::ffi::CString::new(name).unwrap();
        let found = ingest::kafka::consumed_header(&msg, &c_name)
            .map(|v| String::from_utf8(v.to_vec()).unwrap());
        assert_eq!(found, get(name), "{name}");
    }
    assert_eq!(
        ingest::kafka::consumed_header(&msg, c"ce_nonexistent"),
        None
    );
    let value: serde_json::Value = serde_json::from_slice(msg.payload().unwrap()).unwrap();
    assert_eq!(value["customer_id"].as_str(), Some(env.key().as_str()));
    assert_eq!(value["total"]["amount_minor"], 2294);
    assert_eq!(msg.key(), Some(env.key().as_bytes()));
    k.cleanup().await;
}

#[tokio::test]
async fn events_of_one_key_keep_their_order() {
    let k = TestKafka::new().await;
    let producer = EventProducer::new(&k.cfg).unwrap();
    let base = samples()[13].clone(); // inventory.reserved, keyed by SKU
    let sent: Vec<Envelope> = (0..200)
        .map(|_| Envelope::new("/it", base.clone()))
        .collect();
    let deliveries = producer.publish_all(&sent).await.unwrap();
    assert!(
        deliveries
            .windows(2)
            .all(|w| w[0].partition == w[1].partition && w[0].offset < w[1].offset)
    );

    let consumer = DurableConsumer::new(
        &k.cfg,
        ConsumerOptions::new(k.group("order"), vec![k.topic(Topic::Inventory)]),
    )
    .unwrap();
    let mut sink = VecSink::default();
    drain(&consumer, &mut sink, sent.len()).await;
    let got: Vec<_> = sink.records.iter().map(|r| r.envelope.id).collect();
    let want: Vec<_> = sent.iter().map(|e| e.id).collect();
    assert_eq!(got, want);
    k.cleanup().await;
}
