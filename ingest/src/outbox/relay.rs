//! The outbox relay: one leader at a time (a PostgreSQL advisory lock) reads pending rows in
//! `seq` order, publishes them with the idempotent producer, waits for every acknowledgement
//! and only then deletes them (Kafka is the record of what was published). Per-aggregate
//! order holds because an aggregate's rows are written under its row lock (so their seqs
//! follow commit order) and the leader publishes in seq order with one idempotent producer.

use std::future::Future;
use std::time::{Duration, Instant};

use events::{Topic, TopicNames};
use rdkafka::message::{Header, OwnedHeaders};
use sqlx::{PgConnection, PgPool, Row};

use crate::kafka::EventProducer;
use crate::outbox::store::OutboxError;

/// Advisory lock key of the relay leader ("shopstream-outbox" folded into an i64).
const LEADER_LOCK: i64 = 0x5348_4f50_4f55_5442;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows per batch.
    pub batch: i64,
    /// Pause when nothing is pending.
    pub idle: Duration,
    /// Least time from one read to the next after a batch that was not full. Rows written
    /// meanwhile wait for the next read, so under load each read, delete and Kafka request
    /// carries more rows: fewer, larger batches cost the database and the broker less per
    /// event. A full batch is followed at once by the next (a backlog is drained as fast as
    /// it can be). An event reaches Kafka at most this much later than without the pause.
    pub interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 1000,
            idle: Duration::from_millis(20),
            interval: Duration::from_millis(50),
        }
    }
}

impl RelayConfig {
    /// How long to wait before the next read, after a batch of `rows` that took `took`.
    pub fn pause(&self, rows: usize, took: Duration) -> Duration {
        if rows == 0 {
            self.idle
        } else if (rows as i64) < self.batch {
            self.interval.saturating_sub(took)
        } else {
            Duration::ZERO
        }
    }
}

/// Rows published to Kafka but not yet deleted: the crash window.
#[derive(Debug, Default)]
pub struct Published {
    pub seqs: Vec<i64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    pub published: u64,
    pub batches: u64,
}

pub struct Relay {
    pool: PgPool,
    producer: EventProducer,
    names: TopicNames,
    cfg: RelayConfig,
}

impl Relay {
    pub fn new(pool: PgPool, producer: EventProducer, cfg: RelayConfig) -> Self {
        let names = producer.topic_names().clone();
        Relay {
            pool,
            producer,
            names,
            cfg,
        }
    }

    /// Waits until this relay holds the leader lock; the lock lives as long as the returned
    /// connection (a crashed leader's session ends and frees it). The connection is taken
    /// out of the pool: dropped, it closes and frees the lock, instead of going back to the
    /// pool still holding it (a relay restarted in the same process would wait forever).
    pub async fn acquire_leadership(&self) -> Result<PgConnection, OutboxError> {
        let mut conn = self.pool.acquire().await?.detach();
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK)
                .fetch_one(&mut conn)
                .await?;
            if got {
                tracing::info!("outbox relay is the leader");
                return Ok(conn);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Publishes the next batch of pending rows and waits for Kafka to acknowledge all of
    /// them. Does not remove them: call [`Relay::delete_published`] next.
    pub async fn publish_pending(&self) -> Result<Published, OutboxError> {
        let rows = sqlx::query(
            "SELECT seq, topic, key, headers, payload FROM outbox.events ORDER BY seq LIMIT $1",
        )
        .bind(self.cfg.batch)
        .fetch_all(&self.pool)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let base: String = row.try_get("topic")?;
            let topic = self.topic_name(seq, &base)?;
            let key: String = row.try_get("key")?;
            let headers: &str = row.try_get("headers")?;
            let headers: Vec<[String; 2]> =
                serde_json::from_str(headers).map_err(|e| OutboxError::BadRow {
                    seq,
                    reason: format!("headers: {e}"),
                })?;
            let payload: Vec<u8> = row.try_get("payload")?;
            records.push((seq, topic, key, headers, payload));
        }
        let sends = records.iter().map(|(_, topic, key, headers, payload)| {
            let h = headers.iter().fold(OwnedHeaders::new(), |h, [k, v]| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
            self.producer
                .send_raw(topic, Some(key.as_bytes()), Some(payload), h)
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
        Ok(Published {
            seqs: records.into_iter().map(|r| r.0).collect(),
        })
    }

    fn topic_name(&self, seq: i64, base: &str) -> Result<String, OutboxError> {
        Topic::ALL
            .iter()
            .find(|t| t.base_name() == base)
            .map(|t| self.names.name(*t))
            .ok_or_else(|| OutboxError::BadRow {
                seq,
                reason: format!("unknown topic {base:?}"),
            })
    }

    /// Deletes rows Kafka acknowledged: they are published. Losing this (a crash before it
    /// commits) only publishes them again under the same event ids.
    pub async fn delete_published(&self, published: &Published) -> Result<(), OutboxError> {
        if published.seqs.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM outbox.events WHERE seq = ANY($1)")
            .bind(&published.seqs)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Leads (after waiting for the lock) and relays until `shutdown` resolves; the batch
    /// in hand is finished and deleted first.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<RelayStats, OutboxError> {
        use futures::FutureExt;
        tokio::pin!(shutdown);
        let mut stats = RelayStats::default();
        let _leader = tokio::select! {
            _ = &mut shutdown => return Ok(stats),
            conn = self.acquire_leadership() => conn?,
        };
        while (&mut shutdown).now_or_never().is_none() {
            let started = Instant::now();
            let published = self.publish_pending().await?;
            self.delete_published(&published).await?;
            let rows = published.seqs.len();
            if rows > 0 {
                stats.batches += 1;
                stats.published += rows as u64;
                metrics::counter!("shopstream_outbox_published_total").increment(rows as u64);
            }
            let pause = self.cfg.pause(rows, started.elapsed());
            if !pause.is_zero() {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_batch_waits_out_the_interval_a_full_one_does_not_wait() {
        let cfg = RelayConfig {
            batch: 100,
            idle: Duration::from_millis(20),
            interval: Duration::from_millis(50),
        };
        let ms = Duration::from_millis;
        assert_eq!(cfg.pause(0, ms(3)), ms(20), "nothing pending: idle");
        assert_eq!(
            cfg.pause(40, ms(12)),
            ms(38),
            "partial: the rest of the interval"
        );
        assert_eq!(
            cfg.pause(99, ms(80)),
            Duration::ZERO,
            "partial but slow: at once"
        );
        assert_eq!(
            cfg.pause(100, ms(1)),
            Duration::ZERO,
            "full: a backlog, at once"
        );
    }
}
