//! Connection settings shared by producers, consumers and the admin client.

use std::collections::BTreeMap;

use events::TopicNames;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// Kafka settings (`[kafka]` in the config file, `SHOPSTREAM_KAFKA_*` in the environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Client id reported to the broker.
    pub client_id: String,
    /// Prefix of every topic name (empty in production; tests use a unique one).
    pub topic_prefix: String,
    /// Replication factor of topics created by `topics apply`.
    pub replication_factor: i32,
    /// Producer compression: none, gzip, snappy, lz4 or zstd (if built in).
    pub compression: String,
    /// Producer batching delay.
    pub linger_ms: u32,
    /// How long a produced record may wait for delivery before failing.
    pub delivery_timeout_ms: u32,
    /// Extra librdkafka properties, passed through as they are.
    pub extra: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            client_id: "shopstream".into(),
            topic_prefix: String::new(),
            replication_factor: 1,
            compression: "lz4".into(),
            linger_ms: 5,
            delivery_timeout_ms: 60_000,
            extra: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub fn topic_names(&self) -> TopicNames {
        TopicNames::new(self.topic_prefix.clone())
    }

    /// Settings common to every client.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = self.base_config();
        self.apply_extra(&mut c);
        c
    }

    /// Settings for a consumer: [`Self::client_config`] plus consumer defaults (the `extra`
    /// properties still win).
    ///
    /// `fetch.queue.backoff.ms`: once a partition's local queue holds `queued.min.messages`
    /// (100,000), librdkafka postpones its next fetch by this much, 1 s by default. A
    /// consumer that drains 100,000 records in well under a second then waits for the rest
    /// of it: a stateless processor was idle ~60 % of the time and read ~220k events/s
    /// instead of ~550k (`shopstream bench streams`). 10 ms keeps the queue topped up.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = self.base_config();
        c.set("fetch.queue.backoff.ms", "10");
        self.apply_extra(&mut c);
        c
    }

    fn base_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Loopback brokers: fail fast and quietly when the broker is not up yet.
            .set("socket.connection.setup.timeout.ms", "10000")
            .set("log.connection.close", "false");
        c
    }

    fn apply_extra(&self, c: &mut ClientConfig) {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_refetch_soon_unless_told_otherwise() {
        let mut cfg = KafkaConfig::default();
        let get = |c: &ClientConfig| c.get("fetch.queue.backoff.ms").map(str::to_owned);
        assert_eq!(get(&cfg.consumer_config()).as_deref(), Some("10"));
        // Producers and the admin client do not get consumer properties.
        assert_eq!(get(&cfg.client_config()), None);
        cfg.extra
            .insert("fetch.queue.backoff.ms".into(), "250".into());
        assert_eq!(get(&cfg.consumer_config()).as_deref(), Some("250"));
        assert_eq!(
            cfg.consumer_config().get("bootstrap.servers"),
            Some("127.0.0.1:9092")
        );
    }
}
