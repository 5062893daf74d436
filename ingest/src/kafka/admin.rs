//! Topic administration: creates the catalogue's topics, raises partition counts and
//! brings topic configs in line. Idempotent: applying twice changes nothing the second time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use events::TopicPlan;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::config::KafkaConfig;
use crate::kafka::error::KafkaError;

/// What `apply` did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    Created,
    PartitionsIncreased {
        from: i32,
        to: i32,
    },
    ConfigsUpdated(Vec<String>),
    Unchanged,
    /// The topic has more partitions than planned; Kafka cannot shrink, so it is left alone.
    MorePartitionsThanPlanned {
        actual: i32,
    },
}

/// Admin client over the configured cluster.
pub struct TopicAdmin {
    client: Arc<AdminClient<DefaultClientContext>>,
    brokers: String,
    replication_factor: i32,
}

const TIMEOUT: Duration = Duration::from_secs(20);

fn admin_err(operation: &'static str, topic: &str, reason: impl ToString) -> KafkaError {
    KafkaError::Admin {
        operation,
        topic: topic.to_owned(),
        reason: reason.to_string(),
    }
}

impl TopicAdmin {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let client = cfg
            .client_config()
            .create()
            .map_err(|source| KafkaError::Setup {
                what: "admin client",
                brokers: cfg.brokers.clone(),
                source,
            })?;
        Ok(TopicAdmin {
            client: Arc::new(client),
            brokers: cfg.brokers.clone(),
            replication_factor: cfg.replication_factor,
        })
    }

    fn opts() -> AdminOptions {
        AdminOptions::new().operation_timeout(Some(TIMEOUT))
    }

    /// Partition counts of every topic on the cluster; also the reachability check.
    pub async fn partition_counts(&self) -> Result<HashMap<String, i32>, KafkaError> {
        self.topics_where(|_| true).await
    }

    /// Partition counts of the topics (without errors) that `keep` accepts.
    async fn topics_where(
        &self,
        keep: fn(&rdkafka::metadata::MetadataTopic) -> bool,
    ) -> Result<HashMap<String, i32>, KafkaError> {
        let client = self.client.clone();
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            let md = client
                .inner()
                .fetch_metadata(None, Duration::from_secs(10))
                .map_err(|source| KafkaError::Unreachable {
                    brokers: brokers.clone(),
                    source,
                })?;
            Ok(md
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && keep(t))
                .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
                .collect())
        })
        .await
        .map_err(|e| admin_err("metadata", "*", e))?
    }

    /// Number of brokers in the cluster.
    pub async fn broker_count(&self) -> Result<usize, KafkaError> {
        let client = self.client.clone();
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            client
                .inner()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|md| md.brokers().len())
                .map_err(|source| KafkaError::Unreachable { brokers, source })
        })
        .await
        .map_err(|e| admin_err("metadata", "*", e))?
    }

    /// Current values of the given config keys of a topic.
    pub async fn topic_configs(
        &self,
        topic: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, Option<String>>, KafkaError> {
        let spec = ResourceSpecifier::Topic(topic);
        let results = self
            .client
            .describe_configs([&spec], &Self::opts())
            .await
            .map_err(|e| admin_err("describe configs", topic, e))?;
        let mut out = HashMap::new();
        for r in results {
            let resource = r.map_err(|code| admin_err("describe configs", topic, code))?;
            for e in resource.entries {
                if keys.contains(&e.name.as_str()) {
                    out.insert(e.name, e.value);
                }
            }
        }
        Ok(out)
    }

    /// Creates missing topics, raises partition counts and fixes configs.
    pub async fn apply(
        &self,
        plans: &[TopicPlan],
    ) -> Result<Vec<(String, TopicChange)>, KafkaError> {
        let existing = self.partition_counts().await?;
        let mut changes = Vec::with_capacity(plans.len());

        let missing: Vec<&TopicPlan> = plans
            .iter()
            .filter(|p| !existing.contains_key(&p.name))
            .collect();
        if !missing.is_empty() {
            let new_topics: Vec<NewTopic<'_>> = missing
                .iter()
                .map(|p| {
                    p.configs.iter().fold(
                        NewTopic::new(
                            &p.name,
                            p.partitions,
                            TopicReplication::Fixed(self.replication_factor),
                        ),
                        |t, (k, v)| t.set(k, v),
                    )
                })
                .collect();
            let results = self
                .client
                .create_topics(new_topics.iter(), &Self::opts())
                .await
                .map_err(|e| admin_err("create", "*", e))?;
            let mut created = Vec::new();
            for r in results {
                match r {
                    Ok(name) => {
                        created.push(name.clone());
                        changes.push((name, TopicChange::Created))
                    }
                    // Created concurrently by someone else: fine, it is checked below next time.
                    Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        changes.push((name, TopicChange::Unchanged))
                    }
                    Err((name, code)) => {
                        return Err(admin_err("create", &name, code));
                    }
                }
            }
            self.wait_visible(&created).await?;
        }

        for plan in plans {
            let Some(&actual) = existing.get(&plan.name) else {
                continue;
            };
            let mut change = TopicChange::Unchanged;
            if actual < plan.partitions {
                let np = NewPartitions::new(&plan.name, plan.partitions as usize);
                let results = self
                    .client
                    .create_partitions([&np], &Self::opts())
                    .await
                    .map_err(|e| admin_err("add partitions", &plan.name, e))?;
                for r in results {
                    r.map_err(|(name, code)| admin_err("add partitions", &name, code))?;
                }
                change = TopicChange::PartitionsIncreased {
                    from: actual,
                    to: plan.partitions,
                };
            } else if actual > plan.partitions {
                change = TopicChange::MorePartitionsThanPlanned { actual };
            }

            let keys: Vec<&str> = plan.configs.iter().map(|(k, _)| *k).collect();
            let current = self.topic_configs(&plan.name, &keys).await?;
            let differing: Vec<String> = plan
                .configs
                .iter()
                .filter(|(k, v)| current.get(*k).and_then(|c| c.as_deref()) != Some(v.as_str()))
                .map(|(k, _)| (*k).to_owned())
                .collect();
            if !differing.is_empty() {
                let alter = plan.configs.iter().fold(
                    AlterConfig::new(ResourceSpecifier::Topic(&plan.name)),
                    |a, (k, v)| a.set(k, v),
                );
                let results = self
                    .client
                    .alter_configs([&alter], &Self::opts())
                    .await
                    .map_err(|e| admin_err("alter configs", &plan.name, e))?;
                for r in results {
                    r.map_err(|(_, code)| admin_err("alter configs", &plan.name, code))?;
                }
                if change == TopicChange::Unchanged {
                    change = TopicChange::ConfigsUpdated(differing);
                }
            }
            changes.push((plan.name.clone(), change));
        }
        Ok(changes)
    }

    /// Topics whose every partition has a leader: before that, a client that reads offsets
    /// right after creation gets `NotLeaderForPartition`.
    async fn led_topics(&self) -> Result<HashMap<String, i32>, KafkaError> {
        self.topics_where(|t| {
            !t.partitions().is_empty()
                && t.partitions()
                    .iter()
                    .all(|p| p.error().is_none() && p.leader() >= 0)
        })
        .await
    }

    /// Waits (up to 15 s) until metadata lists every topic in `names` with a leader for each
    /// partition: a topic just created is not yet known to every broker, and callers expect
    /// to use it at once (a second `apply` would otherwise try to create it again and see it
    /// as unchanged).
    async fn wait_visible(&self, names: &[String]) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let known = self.led_topics().await?;
            let missing: Vec<&String> = names.iter().filter(|n| !known.contains_key(*n)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(admin_err(
                    "create",
                    missing[0],
                    "created but without a leader for every partition after 15 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes topics (tests clean up their private topics with this).
    pub async fn delete(&self, names: &[&str]) -> Result<(), KafkaError> {
        let results = self
            .client
            .delete_topics(names, &Self::opts())
            .await
            .map_err(|e| admin_err("delete", &names.join(","), e))?;
        for r in results {
            r.map_err(|(name, code)| admin_err("delete", &name, code))?;
        }
        Ok(())
    }
}
