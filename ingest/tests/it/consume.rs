//! Consumer groups commit only after the sink is durable and resume from there.

use std::time::Duration;

use events::{Envelope, Topic, samples};
use ingest::{ConsumerOptions, DurableConsumer, EventProducer, KafkaError};

use crate::support::{TestKafka, VecSink, drain};

fn views(n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|_| Envelope::new("/it", samples()[5].clone()))
        .collect()
}

#[tokio::test]
async fn a_group_resumes_from_its_committed_offsets_after_a_restart() {
    let k = TestKafka::new().await;
    let producer = EventProducer::new(&k.cfg).unwrap();
    let sent = views(30);
    producer.publish_all(&sent).await.unwrap();

    let opts = ConsumerOptions {
        max_batch: 10,
        ..ConsumerOptions::new(k.group("resume"), vec![k.topic(Topic::Clickstream)])
    };
    // First run: one batch of 10, committed, then the process "stops".
    let first = {
        let consumer = DurableConsumer::new(&k.cfg, opts.clone()).unwrap();
        let mut sink = VecSink::default();
        let r = consumer
            .poll_batch(&mut sink, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(r.delivered, 10);
        assert_eq!(r.committed.values().sum::<i64>(), 10);
        sink.records
    };
    // Second run, same group: exactly the other 20, nothing twice.
    let consumer = DurableConsumer::new(&k.cfg, opts).unwrap();
    let mut sink = VecSink::default();
    drain(&consumer, &mut sink, 20).await;
    let mut ids: Vec<_> = first
        .iter()
        .chain(&sink.records)
        .map(|r| r.envelope.id)
        .collect();
    assert_eq!(
        sink.records.len(),
        20,
        "second run got {}",
        sink.records.len()
    );
    ids.sort();
    let mut want: Vec<_> = sent.iter().map(|e| e.id).collect();
    want.sort();
    assert_eq!(ids, want);
    k.cleanup().await;
}

#[tokio::test]
async fn a_failed_sink_commits_nothing_and_the_batch_comes_back() {
    let k = TestKafka::new().await;
    let producer = EventProducer::new(&k.cfg).unwrap();
    let sent = views(5);
    producer.publish_all(&sent).await.unwrap();
    let opts = ConsumerOptions::new(k.group("failing"), vec![k.topic(Topic::Clickstream)]);
    {
        let consumer = DurableConsumer::new(&k.cfg, opts.clone()).unwrap();
        let mut sink = VecSink {
            fail_next: true,
            ..VecSink::default()
        };
        let err = consumer
            .poll_batch(&mut sink, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(err, KafkaError::Sink(_)), "{err}");
        assert!(err.is_retryable());
    }
    // A new member of the group gets all five again: nothing was committed.
    let consumer = DurableConsumer::new(&k.cfg, opts).unwrap();
    let mut sink = VecSink::default();
    drain(&consumer, &mut sink, 5).await;
    assert_eq!(sink.records.len(), 5);
    k.cleanup().await;
}
