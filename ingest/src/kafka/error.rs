//! Errors of the Kafka layer, tagged with whether retrying can help.

/// What went wrong talking to Kafka, and with which topic or operation.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot create Kafka {what} for {brokers}: {source}")]
    Setup {
        what: &'static str,
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "Kafka at {brokers} is unreachable ({source}); is the stack up? try `deploy/local/stack.sh up`"
    )]
    Unreachable {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("producing to {topic} failed: {source}")]
    Produce {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("consuming from {topics:?} failed: {source}")]
    Consume {
        topics: Vec<String>,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("committing offsets of group {group} failed: {source}")]
    Commit {
        group: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("{operation} of topic {topic} failed: {reason}")]
    Admin {
        operation: &'static str,
        topic: String,
        reason: String,
    },
    #[error("sink failed, batch not committed: {0}")]
    Sink(#[source] crate::kafka::SinkError),
}

impl KafkaError {
    /// Whether the same call may succeed later (broker down, timeouts, sink hiccups).
    pub fn is_retryable(&self) -> bool {
        match self {
            KafkaError::Setup { .. } => false,
            KafkaError::Admin { .. } => false,
            KafkaError::Sink(e) => e.retryable,
            _ => true,
        }
    }
}
