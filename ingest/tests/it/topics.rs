//! `topics apply` creates the whole catalogue with its settings, and is idempotent.

use events::{CATALOGUE, TopicNames};
use ingest::{TopicAdmin, TopicChange};

use crate::support::TestKafka;

#[tokio::test]
async fn apply_creates_every_catalogue_topic_and_is_idempotent() {
    let k = TestKafka::new().await; // applies once
    let admin = TopicAdmin::new(&k.cfg).unwrap();
    let counts = admin.partition_counts().await.unwrap();
    for spec in CATALOGUE {
        let name = format!("{}{}", k.names.prefix(), spec.name);
        assert_eq!(counts.get(&name), Some(&spec.partitions), "{name}");
        if spec.has_dlq {
            assert!(
                counts.contains_key(&TopicNames::dlq_of(&name)),
                "{name}.dlq"
            );
        }
    }
    let again = admin.apply(&k.names.plan()).await.unwrap();
    assert_eq!(again.len(), k.names.plan().len());
    for (name, change) in again {
        assert_eq!(change, TopicChange::Unchanged, "{name}");
    }
    k.cleanup().await;
}

#[tokio::test]
async fn apply_raises_partitions_and_repairs_configs() {
    let k = TestKafka::new().await;
    let admin = TopicAdmin::new(&k.cfg).unwrap();
    let mut plan = k.names.plan();
    let orders = plan
        .iter_mut()
        .find(|p| p.name.ends_with(".orders"))
        .unwrap();
    orders.partitions += 2;
    let before = orders.partitions - 2;
    for c in orders.configs.iter_mut() {
        if c.0 == "retention.ms" {
            c.1 = "3600000".into();
        }
    }
    let name = orders.name.clone();
    let changes = admin.apply(&plan).await.unwrap();
    let change = &changes.iter().find(|c| c.0 == name).unwrap().1;
    assert_eq!(
        change,
        &TopicChange::PartitionsIncreased {
            from: before,
            to: before + 2
        }
    );
    // Metadata is eventually consistent: wait until the broker reports the new count.
    for _ in 0..100 {
        if admin.partition_counts().await.unwrap().get(&name) == Some(&(before + 2)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Back to the catalogue: partitions cannot shrink, retention is restored.
    let changes = admin.apply(&k.names.plan()).await.unwrap();
    let change = &changes.iter().find(|c| c.0 == name).unwrap().1;
    assert_eq!(
        change,
        &TopicChange::MorePartitionsThanPlanned { actual: before + 2 }
    );
    // The broker applies config changes asynchronously: wait up to 10 s for the new value.
    let want = events::Topic::Orders.spec().retention.as_ms().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let retention = admin.topic_configs(&name, &["retention.ms"]).await.unwrap();
        if retention["retention.ms"].as_deref() == Some(want.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention not restored: {retention:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let changes = admin.apply(&k.names.plan()).await.unwrap();
    assert!(
        changes
            .iter()
            .all(|(n, c)| n == &name || c == &TopicChange::Unchanged),
        "{changes:?}"
    );
    k.cleanup().await;
}
