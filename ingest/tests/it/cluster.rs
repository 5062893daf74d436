//! Fault test on the 3-broker cluster (`deploy/local/stack.sh up --cluster`): a broker is
//! SIGKILLed mid-stream; with replication 3, min ISR 2, acks=all and idempotence, every
//! event arrives exactly once.

use std::path::PathBuf;
use std::process::Command;

use events::{Envelope, Topic, samples};
use ingest::{ConsumerOptions, DurableConsumer, EventProducer, KafkaConfig, TopicAdmin};

use crate::support::{VecSink, drain};

fn stack(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/stack.sh");
    let status = Command::new(script)
        .args(args)
        .status()
        .expect("stack.sh runs");
    assert!(status.success(), "stack.sh {args:?} failed");
}

/// Restarts the killed node even when the test fails, so later runs find a whole cluster.
struct Restart(&'static str);
impl Drop for Restart {
    fn drop(&mut self) {
        stack(&["cluster-start", self.0]);
    }
}

#[tokio::test]
async fn killing_a_broker_mid_stream_loses_and_duplicates_nothing() {
    let cfg = KafkaConfig {
        brokers: std::env::var("SHOPSTREAM_TEST_CLUSTER_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194".into()),
        replication_factor: 3,
        topic_prefix: format!("fault-{}.", uuid::Uuid::now_v7().simple()),
        delivery_timeout_ms: 60_000,
        ..KafkaConfig::default()
    };
    let admin = TopicAdmin::new(&cfg).unwrap();
    assert_eq!(
        admin
            .broker_count()
            .await
            .expect("the 3-broker cluster is up (stack.sh up --cluster)"),
        3
    );
    let orders = cfg.topic_names().name(Topic::Orders);
    let plan: Vec<_> = cfg
        .topic_names()
        .plan()
        .into_iter()
        .filter(|p| p.name.starts_with(&orders))
        .collect();
    admin.apply(&plan).await.unwrap();

    let producer = EventProducer::new(&cfg).unwrap();
    let order = samples()[10].clone();
    let mut sent = Vec::new();
    let mut restart = None;
    for batch in 0..10 {
        if batch == 3 {
            stack(&["cluster-kill", "2"]);
            restart = Some(Restart("2"));
        }
        let envs: Vec<Envelope> = (0..100)
            .map(|_| Envelope::new("/fault", order.clone()))
            .collect();
        producer
            .publish_all(&envs)
            .await
            .unwrap_or_else(|e| panic!("batch {batch} failed with a broker down: {e}"));
        sent.extend(envs);
    }

    let consumer = DurableConsumer::new(
        &cfg,
        ConsumerOptions::new(format!("{}reader", cfg.topic_prefix), vec![orders]),
    )
    .unwrap();
    let mut sink = VecSink::default();
    drain(&consumer, &mut sink, sent.len()).await;
    drop(restart);
    let mut got: Vec<_> = sink.records.iter().map(|r| r.envelope.id).collect();
    assert_eq!(got.len(), sent.len(), "lost or duplicated events");
    got.sort();
    got.dedup();
    let mut want: Vec<_> = sent.iter().map(|e| e.id).collect();
    want.sort();
    assert_eq!(got, want);
}
