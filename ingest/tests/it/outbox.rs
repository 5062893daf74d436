//! The transactional outbox against real PostgreSQL (a database per test) and Kafka.

use std::collections::HashMap;
use std::time::Duration;

use events::{Envelope, Event, Topic, samples};
use ingest::outbox::{Relay, RelayConfig, enqueue, migrator, pending_count};
use ingest::{ConsumerOptions, DurableConsumer, EventProducer};
use sqlx::PgPool;

use crate::support::{TestKafka, VecSink, drain};

async fn setup(pool: &PgPool) {
    migrator().run(pool).await.expect("outbox migrations");
}

/// Order events of `n` customers, `per` each, written one transaction per event.
async fn write_orders(pool: &PgPool, customers: usize, per: usize) -> Vec<Envelope> {
    let Event::OrderPlaced(base) = samples()[10].clone() else {
        unreachable!()
    };
    let mut written = Vec::new();
    for _ in 0..per {
        for c in 0..customers {
            let mut e = base.clone();
            e.customer_id = uuid::Uuid::from_u128(c as u128 + 1);
            e.order_id = uuid::Uuid::now_v7();
            let env = Envelope::new("/shopstream/orders", e);
            let mut tx = pool.begin().await.unwrap();
            enqueue(&mut tx, &env).await.unwrap();
            tx.commit().await.unwrap();
            written.push(env);
        }
    }
    written
}

/// A relay running in a task of its own.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<ingest::outbox::RelayStats, ingest::outbox::OutboxError>>,
}

impl Running {
    fn start(relay: Relay) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        Running { stop, task }
    }

    /// Waits (15 s at most) for the outbox to be empty, then stops the relay.
    async fn drain_and_stop(self, pool: &PgPool) -> ingest::outbox::RelayStats {
        let mut conn = pool.acquire().await.unwrap();
        for _ in 0..300 {
            if pending_count(&mut conn).await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(pending_count(&mut conn).await.unwrap(), 0);
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap()
    }
}

#[sqlx::test(migrations = false)]
async fn an_event_exists_exactly_when_its_transaction_commits(pool: PgPool) {
    setup(&pool).await;
    let env = Envelope::new("/it", samples()[0].clone());
    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, &env).await.unwrap();
    tx.rollback().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(pending_count(&mut conn).await.unwrap(), 0);

    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, &env).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(pending_count(&mut conn).await.unwrap(), 1);
    // The same event written twice is two rows under one id: nothing refuses it since the
    // outbox dropped its unique index on `event_id` (docs/decisions.md, migration 1003), and
    // it is published twice under one id, as after a relay crash.
    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, &env).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(pending_count(&mut conn).await.unwrap(), 2);
}

#[sqlx::test(migrations = false)]
async fn rows_written_together_match_rows_written_one_by_one_in_order(pool: PgPool) {
    use ingest::outbox::OutboxRows;
    use sqlx::Row;
    setup(&pool).await;
    let envs: Vec<Envelope> = samples()
        .into_iter()
        .take(5)
        .map(|e| Envelope::new("/it", e))
        .collect();
    // One by one, as `enqueue` writes them...
    let mut conn = pool.acquire().await.unwrap();
    for env in &envs {
        enqueue(&mut conn, env).await.unwrap();
    }
    // ...and the same events (new ids) in one statement.
    let again: Vec<Envelope> = envs
        .iter()
        .map(|e| Envelope::new("/it", e.event.clone()))
        .collect();
    let mut rows = OutboxRows::default();
    for env in &again {
        rows.push(env).unwrap();
    }
    assert_eq!(rows.len(), 5);
    rows.insert(&mut conn).await.unwrap();
    let stored = sqlx::query(
        "SELECT event_id, topic, key, event_type, headers, payload FROM outbox.events ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 10);
    for (i, env) in envs.iter().chain(&again).enumerate() {
        let row = &stored[i];
        assert_eq!(
            row.get::<uuid::Uuid, _>("event_id"),
            env.id,
            "row {i} in push order"
        );
        assert_eq!(row.get::<String, _>("topic"), env.topic().base_name());
        assert_eq!(row.get::<String, _>("key"), env.key());
        assert_eq!(row.get::<String, _>("event_type"), env.event_type());
        assert_eq!(row.get::<Vec<u8>, _>("payload"), env.payload());
    }
    // The headers differ only in the id (and time) the envelopes carry.
    let names = |r: &sqlx::postgres::PgRow| -> Vec<String> {
        serde_json::from_str::<serde_json::Value>(r.get::<&str, _>("headers"))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&stored[0]), names(&stored[5]));

    // Inside a caller's statement with a guard: written only when the guarded change is.
    let guarded = |first: bool| {
        let mut rows = OutboxRows::default();
        rows.push(&Envelope::new("/it", samples()[0].clone()))
            .unwrap();
        let sql = format!(
            "WITH changed AS (SELECT 1 AS x WHERE $1), events AS ({}) SELECT count(*) FROM changed",
            OutboxRows::sql(2, Some("changed"))
        );
        rows.bind(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(first))
    };
    let n: i64 = guarded(false).fetch_one(&pool).await.unwrap().get(0);
    assert_eq!(n, 0);
    assert_eq!(
        pending_count(&mut conn).await.unwrap(),
        10,
        "guard false: nothing"
    );
    let n: i64 = guarded(true).fetch_one(&pool).await.unwrap().get(0);
    assert_eq!(n, 1);
    assert_eq!(
        pending_count(&mut conn).await.unwrap(),
        11,
        "guard true: the row"
    );
}

#[sqlx::test(migrations = false)]
async fn a_relay_killed_between_publish_and_delete_loses_nothing(pool: PgPool) {
    setup(&pool).await;
    let k = TestKafka::new().await;
    let written = write_orders(&pool, 7, 20).await;
    let cfg = RelayConfig {
        batch: 60,
        ..RelayConfig::default()
    };

    // The first relay publishes a batch and dies before deleting it.
    {
        let relay = Relay::new(
            pool.clone(),
            EventProducer::new(&k.cfg).unwrap(),
            cfg.clone(),
        );
        let _leader = relay.acquire_leadership().await.unwrap();
        let published = relay.publish_pending().await.unwrap();
        assert_eq!(published.seqs.len(), 60);
    }
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(
        pending_count(&mut conn).await.unwrap(),
        140,
        "nothing was deleted"
    );

    // A new relay takes over and drains the outbox.
    let relay = Relay::new(pool.clone(), EventProducer::new(&k.cfg).unwrap(), cfg);
    let running = Running::start(relay);
    let stats = running.drain_and_stop(&pool).await;
    assert_eq!(stats.published, 140);
    assert_eq!(
        stats.batches, 3,
        "60 + 60 + 20: full batches are read back to back"
    );

    let consumer = DurableConsumer::new(
        &k.cfg,
        ConsumerOptions::new(k.group("outbox"), vec![k.topic(Topic::Orders)]),
    )
    .unwrap();
    let mut sink = VecSink::default();
    drain(&consumer, &mut sink, 200).await;
    // 60 duplicates of the same ids, nothing lost, each customer's events in order.
    assert_eq!(sink.records.len(), 200);
    let mut first_seen = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &sink.records {
        if seen.insert(r.envelope.id) {
            first_seen.push(r.envelope.clone());
        }
    }
    assert_eq!(first_seen.len(), written.len());
    let by_key = |envs: &[Envelope]| {
        let mut m: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
        for e in envs {
            m.entry(e.key()).or_default().push(e.id);
        }
        m
    };
    assert_eq!(by_key(&first_seen), by_key(&written));
    k.cleanup().await;
}

#[sqlx::test(migrations = false)]
async fn only_one_relay_leads_at_a_time(pool: PgPool) {
    setup(&pool).await;
    let k = TestKafka::new().await;
    let a = Relay::new(
        pool.clone(),
        EventProducer::new(&k.cfg).unwrap(),
        RelayConfig::default(),
    );
    let b = Relay::new(
        pool.clone(),
        EventProducer::new(&k.cfg).unwrap(),
        RelayConfig::default(),
    );
    let lead = a.acquire_leadership().await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_secs(2), b.acquire_leadership()).await;
    assert!(
        waiting.is_err(),
        "a second relay must not lead while the first does"
    );
    drop(lead); // the leader's session ends, as when its process dies
    let took_over = tokio::time::timeout(Duration::from_secs(5), b.acquire_leadership()).await;
    assert!(
        took_over.is_ok(),
        "the standby takes over when the leader's session ends"
    );
    k.cleanup().await;
}

#[sqlx::test(migrations = false)]
async fn a_row_with_malformed_headers_stops_the_relay_naming_it_and_stays(pool: PgPool) {
    setup(&pool).await;
    let k = TestKafka::new().await;
    let env = Envelope::new("/it", samples()[0].clone());
    let mut conn = pool.acquire().await.unwrap();
    enqueue(&mut conn, &env).await.unwrap();
    // The headers are text the relay parses; a row edited by hand can break them.
    let seq: i64 =
        sqlx::query_scalar("UPDATE outbox.events SET headers = '[[\"ce_id\"' RETURNING seq")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let relay = Relay::new(
        pool.clone(),
        EventProducer::new(&k.cfg).unwrap(),
        RelayConfig::default(),
    );
    match relay.publish_pending().await {
        Err(ingest::outbox::OutboxError::BadRow { seq: s, reason }) => {
            assert_eq!(s, seq);
            assert!(reason.contains("headers"), "{reason}");
        }
        other => panic!("expected BadRow for row {seq}, got {other:?}"),
    }
    assert_eq!(pending_count(&mut conn).await.unwrap(), 1, "the row stays");
    k.cleanup().await;
}

#[sqlx::test(migrations = false)]
async fn events_written_during_the_interval_wait_for_one_read(pool: PgPool) {
    setup(&pool).await;
    let k = TestKafka::new().await;
    write_orders(&pool, 1, 1).await;
    let relay = Relay::new(
        pool.clone(),
        EventProducer::new(&k.cfg).unwrap(),
        RelayConfig {
            interval: Duration::from_secs(2),
            ..RelayConfig::default()
        },
    );
    let running = Running::start(relay);
    // Five more events 100 ms apart, while the relay waits out the interval after reading
    // the first alone. Without the interval (a read every 20 ms when idle) each would be
    // a read of its own.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        write_orders(&pool, 1, 1).await;
    }
    let stats = running.drain_and_stop(&pool).await;
    assert_eq!(stats.published, 6);
    assert!(stats.batches <= 2, "{} reads for 6 events", stats.batches);
}
