//! Malformed records land in `<topic>.dlq` with the error and origin; good ones flow on.

use events::{Envelope, Topic, TopicNames, header, samples};
use ingest::dlq::header as dlq;
use ingest::{ConsumerOptions, DurableConsumer, EventProducer};
use rdkafka::message::{Header, OwnedHeaders};

use crate::support::{TestKafka, VecSink, drain};

#[tokio::test]
async fn malformed_records_go_to_the_dlq_and_the_consumer_keeps_going() {
    let k = TestKafka::new().await;
    let producer = EventProducer::new(&k.cfg).unwrap();
    let orders = k.topic(Topic::Orders);
    let good: Vec<Envelope> = (0..4)
        .map(|_| Envelope::new("/it", samples()[10].clone()))
        .collect();
    let key = good[0].key();

    producer.publish(&good[0]).await.unwrap();
    producer.publish(&good[1]).await.unwrap();
    // Bad JSON under valid headers.
    let h = ingest::kafka::envelope_headers(&good[0]);
    producer
        .send_raw(
            &orders,
            Some(key.as_bytes()),
            Some(b"{\"order_id\": oops"),
            h,
        )
        .await
        .unwrap();
    // No CloudEvents headers at all.
    producer
        .send_raw(
            &orders,
            Some(key.as_bytes()),
            Some(b"hello"),
            OwnedHeaders::new(),
        )
        .await
        .unwrap();
    // An event type nobody knows.
    let unknown = OwnedHeaders::new()
        .insert(Header {
            key: header::SPECVERSION,
            value: Some("1.0"),
        })
        .insert(Header {
            key: header::ID,
            value: Some("0190a0a0-0000-7000-8000-000000000001"),
        })
        .insert(Header {
            key: header::TYPE,
            value: Some("order.teleported.v1"),
        })
        .insert(Header {
            key: header::SOURCE,
            value: Some("/it"),
        })
        .insert(Header {
            key: header::TIME,
            value: Some("2026-11-24T10:00:00Z"),
        });
    producer
        .send_raw(&orders, Some(key.as_bytes()), Some(b"{}"), unknown)
        .await
        .unwrap();
    producer.publish(&good[2]).await.unwrap();
    producer.publish(&good[3]).await.unwrap();

    let consumer = DurableConsumer::new(
        &k.cfg,
        ConsumerOptions::new(k.group("dlq"), vec![orders.clone()]),
    )
    .unwrap();
    let mut sink = VecSink::default();
    let report = drain(&consumer, &mut sink, 4).await;
    assert_eq!(report.dead_lettered, 3);
    let got: Vec<_> = sink.records.iter().map(|r| r.envelope.id).collect();
    let want: Vec<_> = good.iter().map(|e| e.id).collect();
    assert_eq!(got, want, "good records all delivered, in order");
    assert_eq!(
        report.committed.values().sum::<i64>(),
        7,
        "bad records committed too"
    );

    // Read the DLQ raw: original bytes plus why and where from.
    let dlq_topic = TopicNames::dlq_of(&orders);
    let raw: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &k.cfg.brokers)
        .set("group.id", k.group("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    raw.subscribe(&[&dlq_topic]).unwrap();
    let mut dead = Vec::new();
    while dead.len() < 3 {
        let m = tokio::time::timeout(std::time::Duration::from_secs(30), raw.recv())
            .await
            .expect("dlq records arrive")
            .unwrap()
            .detach();
        dead.push(m);
    }
    dead.sort_by_key(|m| {
        let h = m.headers().unwrap();
        let off = h
            .iter()
            .find(|h| h.key == dlq::ORIGIN_OFFSET)
            .unwrap()
            .value
            .unwrap()
            .to_vec();
        String::from_utf8(off).unwrap().parse::<i64>().unwrap()
    });
    let kinds: Vec<String> = dead
        .iter()
        .map(|m| {
            let h = m.headers().unwrap();
            let get = |k: &str| {
                h.iter()
                    .find(|h| h.key == k)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8(v.to_vec()).unwrap())
            };
            assert_eq!(get(dlq::ORIGIN_TOPIC).as_deref(), Some(orders.as_str()));
            assert!(get(dlq::ERROR).is_some_and(|e| !e.is_empty()));
            assert_eq!(m.key(), Some(key.as_bytes()), "original key kept");
            get(dlq::ERROR_KIND).unwrap()
        })
        .collect();
    assert_eq!(
        kinds,
        ["invalid_payload", "missing_header", "unknown_event_type"]
    );
    assert_eq!(
        dead[1].payload(),
        Some(&b"hello"[..]),
        "original payload kept"
    );
    k.cleanup().await;
}
