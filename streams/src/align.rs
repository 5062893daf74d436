//! Event-time alignment of a global processor's inputs. Kafka orders records within a
//! partition only; a processor reading several topics sees them in whatever order the
//! fetches return, and while it works through a backlog one partition can run minutes of
//! event time ahead of another. Fraud features depend on that order (declines before the
//! order they precede), so a replay could decide differently from the first run.
//!
//! The aligner releases records in event-time order (ties by topic, partition, offset) as
//! long as every partition that still has a backlog has a record buffered; a partition read
//! to its end does not hold the others back, so live records pass at once. A partition
//! that delivers nothing for a while is re-measured, then given up on, and the buffer is
//! bounded, so a stuck partition delays but never stops processing.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
#[cfg(test)]
use rdkafka::message::OwnedMessage;

use crate::window::Millis;

/// How long a partition with a backlog may deliver nothing before its end is re-read, and
/// (four times that) before it stops holding the others back.
const STALL: Duration = Duration::from_secs(2);

struct Part<M> {
    queue: VecDeque<(Millis, M)>,
    /// The next offset to arrive from the broker.
    next: i64,
    /// The partition's end when last measured.
    end: i64,
    /// Since when it has held the others back with nothing buffered.
    waiting_since: Option<Instant>,
}

pub struct Aligner<M> {
    parts: HashMap<(String, i32), Part<M>>,
    buffered: usize,
    max_buffered: usize,
}

/// A record's event time: its `ce_time` header; records without one sort first (they are
/// undecodable and go to the DLQ anyway).
fn event_time<M: Message>(m: &M) -> Millis {
    m.headers()
        .and_then(|h| {
            h.iter()
                .find(|h| h.key == events::header::TIME)
                .and_then(|h| h.value)
        })
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map_or(Millis::MIN, |t| t.timestamp_millis())
}

impl<M: Message> Aligner<M> {
    pub fn new(max_buffered: usize) -> Self {
        Aligner {
            parts: HashMap::new(),
            buffered: 0,
            max_buffered: max_buffered.max(1),
        }
    }

    /// A partition to align, read from `next`, whose end is `end` now.
    pub fn track(&mut self, topic: &str, partition: i32, next: i64, end: i64) {
        self.parts.insert(
            (topic.to_owned(), partition),
            Part {
                queue: VecDeque::new(),
                next,
                end,
                waiting_since: None,
            },
        );
    }

    /// Records buffered, not yet released.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    pub fn push(&mut self, m: M) {
        let ts = event_time(&m);
        let key = (m.topic().to_owned(), m.partition());
        let part = self.parts.entry(key).or_insert_with(|| Part {
            queue: VecDeque::new(),
            next: m.offset(),
            end: m.offset(),
            waiting_since: None,
        });
        part.next = part.next.max(m.offset() + 1);
        part.end = part.end.max(part.next);
        part.waiting_since = None;
        part.queue.push_back((ts, m));
        self.buffered += 1;
    }

    /// Whether `p` must be waited for: nothing buffered, but records before its end.
    fn holds_back(p: &Part<M>) -> bool {
        p.queue.is_empty() && p.next < p.end
    }

    /// Re-measures partitions that held the others back too long; gives up on the ones that
    /// still deliver nothing.
    fn recheck(&mut self, watermarks: &impl Fn(&str, i32) -> Option<(i64, i64)>) {
        let now = Instant::now();
        for ((topic, partition), p) in &mut self.parts {
            if !Self::holds_back(p) {
                p.waiting_since = None;
                continue;
            }
            let since = *p.waiting_since.get_or_insert(now);
            let waited = now.duration_since(since);
            if waited >= 4 * STALL {
                tracing::warn!(
                    topic,
                    partition,
                    next = p.next,
                    end = p.end,
                    "partition delivers nothing; no longer aligning with it"
                );
                p.end = p.next;
            } else if waited >= STALL
                && let Some((low, high)) = watermarks(topic, *partition)
            {
                // Retention may have removed records it was waiting for.
                p.next = p.next.max(low);
                p.end = high;
            }
        }
    }

    /// The records that can go now, in event-time order.
    pub fn release(&mut self, consumer: &StreamConsumer) -> Vec<M> {
        self.release_with(|topic, partition| {
            consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(2))
                .ok()
        })
    }

    /// [`Aligner::release`], with partition ends (low, high) from `watermarks`.
    pub fn release_with(&mut self, watermarks: impl Fn(&str, i32) -> Option<(i64, i64)>) -> Vec<M> {
        self.recheck(&watermarks);
        let mut out = Vec::new();
        loop {
            let full = self.buffered >= self.max_buffered;
            if !full && self.parts.values().any(Self::holds_back) {
                break;
            }
            let Some(key) = self
                .parts
                .iter()
                .filter_map(|(k, p)| p.queue.front().map(|(ts, m)| ((*ts, k, m.offset()), k)))
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, k)| k.clone())
            else {
                break;
            };
            let part = self.parts.get_mut(&key).expect("chosen from the map");
            if let Some((_, m)) = part.queue.pop_front() {
                self.buffered -= 1;
                out.push(m);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, Timestamp};

    fn record(topic: &str, partition: i32, offset: i64, minute: u32) -> OwnedMessage {
        let time = format!("2026-11-01T10:{minute:02}:00Z");
        let headers = OwnedHeaders::new().insert(Header {
            key: events::header::TIME,
            value: Some(time.as_bytes()),
        });
        OwnedMessage::new(
            None,
            None,
            topic.into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            Some(headers),
        )
    }

    fn order(released: &[OwnedMessage]) -> Vec<(String, i64)> {
        released
            .iter()
            .map(|m| (m.topic().to_owned(), m.offset()))
            .collect()
    }

    #[test]
    fn a_backlog_is_released_in_event_time_order_across_partitions() {
        let no_change = |_: &str, _: i32| None;
        let mut a = Aligner::new(1_000);
        a.track("payments", 0, 0, 2);
        a.track("orders", 0, 0, 1);
        a.track("users", 0, 5, 5); // read to its end: holds nothing back
        // The order (minute 9) arrives first; the declines before it are still unread.
        a.push(record("orders", 0, 0, 9));
        assert!(a.release_with(no_change).is_empty());
        a.push(record("payments", 0, 0, 3));
        let first = a.release_with(no_change);
        assert_eq!(order(&first), vec![("payments".into(), 0)]);
        a.push(record("payments", 0, 1, 5));
        // Payments is now read to its end: the order goes after both declines.
        let rest = a.release_with(no_change);
        assert_eq!(
            order(&rest),
            vec![("payments".into(), 1), ("orders".into(), 0)]
        );
        assert_eq!(a.buffered(), 0);
        // Live records of a caught-up reader pass at once.
        a.push(record("users", 0, 5, 1));
        assert_eq!(order(&a.release_with(no_change)), vec![("users".into(), 5)]);
    }

    #[test]
    fn a_full_buffer_releases_even_while_a_partition_lags() {
        let mut a = Aligner::new(2);
        a.track("orders", 0, 0, 10);
        a.track("payments", 0, 0, 10);
        a.push(record("orders", 0, 0, 1));
        assert!(a.release_with(|_, _| None).is_empty());
        a.push(record("orders", 0, 1, 2));
        let out = a.release_with(|_, _| None);
        assert_eq!(order(&out), vec![("orders".into(), 0)]);
    }
}
