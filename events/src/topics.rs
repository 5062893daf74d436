//! The topic catalogue: every Kafka topic the platform uses, with partitions, key,
//! retention and cleanup policy. Topics are created from this by `shopstream topics apply`,
//! never by hand. Names get an optional prefix so tests can use private topics.

use std::fmt;

/// What a topic's records are keyed by (and so what stays ordered within a partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Customer id; anonymous sessions use their session id.
    CustomerOrSession,
    ProductId,
    Sku,
    /// Anomaly series name.
    Series,
    /// Fraud rule id (compacted: the latest version of each rule).
    RuleId,
    /// Aggregation window key (`metric|dimension|window_start`).
    WindowKey,
    /// Same key as the origin record.
    Origin,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::CustomerOrSession => "customer_id | session_id",
            KeyKind::ProductId => "product_id",
            KeyKind::Sku => "sku",
            KeyKind::Series => "series",
            KeyKind::RuleId => "rule_id",
            KeyKind::WindowKey => "window_key",
            KeyKind::Origin => "origin key",
        })
    }
}

/// Kafka `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    Delete,
    Compact,
}

impl Cleanup {
    pub fn as_config(self) -> &'static str {
        match self {
            Cleanup::Delete => "delete",
            Cleanup::Compact => "compact",
        }
    }
}

/// Kafka `retention.ms`: a number of days, or forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Days(u32),
    Forever,
}

impl Retention {
    pub fn as_ms(self) -> i64 {
        match self {
            Retention::Days(d) => i64::from(d) * 24 * 3600 * 1000,
            Retention::Forever => -1,
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::Days(d) => write!(f, "{d}d"),
            Retention::Forever => f.write_str("forever"),
        }
    }
}

/// The platform's topics. Domain events map to one of these; the rest carry derived data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Users,
    Catalog,
    Clickstream,
    Carts,
    Orders,
    Inventory,
    Payments,
    Shipments,
    Reviews,
    FraudAlerts,
    Anomalies,
    FraudRules,
    Metrics,
    LateEvents,
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub topic: Topic,
    /// Base name, before any prefix.
    pub name: &'static str,
    pub partitions: i32,
    pub key: KeyKind,
    pub retention: Retention,
    pub cleanup: Cleanup,
    /// Whether consumers route undecodable records to `<name>.dlq`.
    pub has_dlq: bool,
    pub description: &'static str,
}

// A positional constructor keeps the catalogue below readable as a table.
#[allow(clippy::too_many_arguments)]
const fn spec(
    topic: Topic,
    name: &'static str,
    partitions: i32,
    key: KeyKind,
    retention: Retention,
    cleanup: Cleanup,
    has_dlq: bool,
    description: &'static str,
) -> TopicSpec {
    TopicSpec {
        topic,
        name,
        partitions,
        key,
        retention,
        cleanup,
        has_dlq,
        description,
    }
}

use Cleanup::{Compact, Delete};
use KeyKind::*;
use Retention::{Days, Forever};

/// Every topic of the platform. DLQ topics are derived from the entries with `has_dlq`.
pub const CATALOGUE: &[TopicSpec] = &[
    spec(
        Topic::Users,
        "users",
        6,
        CustomerOrSession,
        Days(30),
        Delete,
        true,
        "user.registered, user.logged_in",
    ),
    spec(
        Topic::Catalog,
        "catalog",
        6,
        ProductId,
        Forever,
        Delete,
        true,
        "product.created, product.updated, price.changed (kept forever to rebuild product state)",
    ),
    spec(
        Topic::Clickstream,
        "clickstream",
        12,
        CustomerOrSession,
        Days(7),
        Delete,
        true,
        "product.viewed, search.performed",
    ),
    spec(
        Topic::Carts,
        "carts",
        6,
        CustomerOrSession,
        Days(14),
        Delete,
        true,
        "cart.item_added, cart.item_removed, checkout.started",
    ),
    spec(
        Topic::Orders,
        "orders",
        6,
        CustomerOrSession,
        Days(90),
        Delete,
        true,
        "order.placed, order.confirmed, order.cancelled",
    ),
    spec(
        Topic::Inventory,
        "inventory",
        6,
        Sku,
        Days(30),
        Delete,
        true,
        "inventory.reserved, inventory.released, inventory.adjusted",
    ),
    spec(
        Topic::Payments,
        "payments",
        6,
        CustomerOrSession,
        Days(90),
        Delete,
        true,
        "payment.authorized, payment.failed, payment.refunded",
    ),
    spec(
        Topic::Shipments,
        "shipments",
        6,
        CustomerOrSession,
        Days(90),
        Delete,
        true,
        "shipment.created, shipment.delivered",
    ),
    spec(
        Topic::Reviews,
        "reviews",
        3,
        ProductId,
        Days(365),
        Delete,
        true,
        "review.posted",
    ),
    spec(
        Topic::FraudAlerts,
        "fraud.alerts",
        3,
        CustomerOrSession,
        Days(365),
        Delete,
        true,
        "fraud.alert.raised, fraud.alert.resolved (resolutions are training labels)",
    ),
    spec(
        Topic::Anomalies,
        "anomalies",
        3,
        Series,
        Days(90),
        Delete,
        true,
        "anomaly.detected",
    ),
    spec(
        Topic::FraudRules,
        "fraud.rules",
        1,
        RuleId,
        Forever,
        Compact,
        false,
        "current fraud rule set, hot-reloaded by the fraud processor",
    ),
    spec(
        Topic::Metrics,
        "metrics",
        6,
        WindowKey,
        Days(7),
        Delete,
        false,
        "windowed aggregates from the stream processors",
    ),
    spec(
        Topic::LateEvents,
        "late-events",
        3,
        Origin,
        Days(14),
        Delete,
        false,
        "events that arrived after their window's allowed lateness",
    ),
];

/// Partitions, retention and policy of every `<topic>.dlq`.
pub const DLQ_PARTITIONS: i32 = 3;
pub const DLQ_RETENTION: Retention = Days(30);

impl Topic {
    /// Every topic, in catalogue order.
    pub const ALL: [Topic; 14] = [
        Topic::Users,
        Topic::Catalog,
        Topic::Clickstream,
        Topic::Carts,
        Topic::Orders,
        Topic::Inventory,
        Topic::Payments,
        Topic::Shipments,
        Topic::Reviews,
        Topic::FraudAlerts,
        Topic::Anomalies,
        Topic::FraudRules,
        Topic::Metrics,
        Topic::LateEvents,
    ];

    pub fn spec(self) -> &'static TopicSpec {
        CATALOGUE
            .iter()
            .find(|s| s.topic == self)
            .expect("every Topic variant has a catalogue entry (checked by a test)")
    }

    pub fn base_name(self) -> &'static str {
        self.spec().name
    }
}

/// A concrete topic to create: name with prefix, partitions, and topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(&'static str, String)>,
    pub key: KeyKind,
    pub description: &'static str,
}

/// Topic names under one prefix (empty in production, unique per test).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn new(prefix: impl Into<String>) -> Self {
        TopicNames {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Full name of a topic, e.g. `orders` or `it-1234.orders`.
    pub fn name(&self, topic: Topic) -> String {
        format!("{}{}", self.prefix, topic.base_name())
    }

    /// The dead-letter topic of any topic name.
    pub fn dlq_of(topic_name: &str) -> String {
        format!("{topic_name}.dlq")
    }

    /// Everything `topics apply` creates: the catalogue plus its DLQs.
    pub fn plan(&self) -> Vec<TopicPlan> {
        let mut out = Vec::new();
        for s in CATALOGUE {
            let name = format!("{}{}", self.prefix, s.name);
            let mut configs = vec![("cleanup.policy", s.cleanup.as_config().to_owned())];
            if s.cleanup == Delete {
                configs.push(("retention.ms", s.retention.as_ms().to_string()));
            }
            if s.has_dlq {
                out.push(TopicPlan {
                    name: Self::dlq_of(&name),
                    partitions: DLQ_PARTITIONS,
                    configs: vec![
                        ("cleanup.policy", "delete".to_owned()),
                        ("retention.ms", DLQ_RETENTION.as_ms().to_string()),
                    ],
                    key: Origin,
                    description: "undecodable records of the topic, with error and origin headers",
                });
            }
            out.push(TopicPlan {
                name,
                partitions: s.partitions,
                configs,
                key: s.key,
                description: s.description,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_has_exactly_one_catalogue_entry() {
        assert_eq!(CATALOGUE.len(), Topic::ALL.len());
        for t in Topic::ALL {
            assert_eq!(
                CATALOGUE.iter().filter(|s| s.topic == t).count(),
                1,
                "{t:?}"
            );
            assert_eq!(t.spec().topic, t);
        }
    }

    #[test]
    fn catalogue_names_are_unique_and_valid_kafka_names() {
        let plan = TopicNames::new("t.").plan();
        let mut names: Vec<_> = plan.iter().map(|p| p.name.clone()).collect();
        names.dedup();
        assert_eq!(names.len(), plan.len());
        for n in &names {
            assert!(n.len() < 250);
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                "{n}"
            );
        }
        assert!(names.contains(&"t.orders.dlq".to_owned()));
        assert!(!names.contains(&"t.fraud.rules.dlq".to_owned()));
    }

    #[test]
    fn compacted_topics_have_no_retention_and_delete_topics_do() {
        for p in TopicNames::default().plan() {
            let policy = &p
                .configs
                .iter()
                .find(|c| c.0 == "cleanup.policy")
                .unwrap()
                .1;
            let has_retention = p.configs.iter().any(|c| c.0 == "retention.ms");
            assert_eq!(policy == "delete", has_retention, "{}", p.name);
        }
    }
}
