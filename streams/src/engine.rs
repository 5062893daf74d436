//! The processing engine shared by every stream processor.
//!
//! A processor is plain synchronous code over its checkpointed state; the engine does the
//! I/O around it:
//! 1. polls a batch from Kafka; undecodable records go to `<topic>.dlq` and are skipped;
//! 2. hands each record to the processor with the state of its *shard* and advances the
//!    shard's input offsets; records below a shard's checkpointed offset (re-delivered after
//!    a crash) are skipped, so state never counts an event twice;
//! 3. advances event-time watermarks (per partition, idle partitions excluded) and lets the
//!    processor fire windows;
//! 4. checkpoints: produces the outputs (metrics, alerts, late events) and waits for their
//!    delivery, then in **one PostgreSQL transaction** upserts the sink rows and saves each
//!    changed shard's state with its offsets (fenced by version, so a zombie instance cannot
//!    overwrite a newer checkpoint), and only then commits offsets to Kafka.
//!
//! A crash anywhere replays from the last checkpoint: PostgreSQL sinks are upserts of
//! absolute values or inserts keyed by event id, so they end up exactly-once; Kafka outputs
//! may repeat with the same key and id, which consumers drop.
//!
//! Two modes: [`Mode::Partitioned`] processors join a consumer group and keep one shard per
//! input partition, so several instances share the work and a survivor resumes a dead
//! instance's partitions from their checkpoints. [`Mode::Global`] processors need state
//! across keys of different partitions (fraud features per card and device, whole-shop
//! anomaly series): one leader (a PostgreSQL advisory lock) consumes every partition into
//! one shard; standbys wait for the lock and take over from the checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use events::{Envelope, Event, Topic, TopicNames};
use futures::{FutureExt, StreamExt};
use ingest::kafka::{consumed_header, decode_message, envelope_headers};
use ingest::{EventProducer, KafkaConfig, KafkaError, dlq};
use rdkafka::consumer::{
    CommitMode, Consumer, DefaultConsumerContext, MessageStream, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::align::Aligner;
use crate::sink::{self, Row};
use crate::window::{Millis, Watermarks};

/// `events::header::TYPE` and `TIME` as C strings, for [`consumed_header`].
const TYPE_HEADER: &std::ffi::CStr = c"ce_type";
const TIME_HEADER: &std::ffi::CStr = c"ce_time";

/// Records a global processor may hold back for event-time alignment.
const ALIGN_BUFFER: usize = 200_000;

/// How a processor's state is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Partitioned,
    Global,
}

/// One decoded input record.
pub struct In<'a> {
    pub topic: Topic,
    pub partition: i32,
    pub offset: i64,
    pub envelope: &'a Envelope,
    /// Event time in milliseconds.
    pub ts: Millis,
}

/// A record for Kafka: a contract event, or a JSON document (metrics, late events).
#[derive(Debug, Clone)]
pub enum OutRecord {
    Event(Envelope),
    Json {
        topic: Topic,
        key: String,
        value: serde_json::Value,
    },
    /// An input record passed on unchanged (late events keep their CloudEvents headers).
    Late {
        envelope: Envelope,
        origin: String,
    },
}

/// What a processor produced while handling records.
#[derive(Debug, Default)]
pub struct Out {
    pub records: Vec<OutRecord>,
    pub rows: Vec<Row>,
    /// Deliver this batch's events and one-per-key rows (alerts, blocks, anomalies) as soon
    /// as it is done, without waiting for the next checkpoint (alerts want low latency).
    pub urgent: bool,
}

impl Out {
    /// Routes an input whose windows are all purged to the late-events topic, with its origin.
    pub fn route_late(&mut self, input: &In<'_>) {
        self.records.push(OutRecord::Late {
            envelope: input.envelope.clone(),
            origin: format!(
                "{}:{}:{}",
                input.topic.base_name(),
                input.partition,
                input.offset
            ),
        });
    }
}

/// A stream processor: synchronous logic over a checkpointed state.
pub trait Processor: Send {
    type State: Serialize + DeserializeOwned + Send;
    fn name(&self) -> &'static str;
    fn mode(&self) -> Mode;
    fn inputs(&self) -> Vec<Topic>;
    fn new_state(&self) -> Self::State;
    fn on_event(&mut self, state: &mut Self::State, input: &In<'_>, out: &mut Out);
    /// The shard's watermark moved forward: fire windows.
    fn on_watermark(&mut self, state: &mut Self::State, watermark: Millis, out: &mut Out);
    /// Before a checkpoint of a changed shard: emit partial results as sink rows.
    fn on_checkpoint(&mut self, _state: &mut Self::State, _shard: &str, _out: &mut Out) {}
    /// Between batches: reload rules, catch up side tables.
    fn between_batches(&mut self) {}
    /// Whether the processor handles events of this `ce_type` (every type, by default).
    /// Records of other types are not decoded: they only advance their partition's offset
    /// and event-time clock, and are counted in [`RunReport::filtered`]. A record whose
    /// headers are unreadable is always decoded, so it still goes to the DLQ.
    fn wants(&self, _event_type: &str) -> bool {
        true
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub kafka: KafkaConfig,
    /// Out-of-orderness tolerated before events count against lateness.
    pub watermark_bound: Duration,
    /// A partition without events for this long does not hold the watermark back.
    pub idle_after: Duration,
    /// How often state is checkpointed (sooner when alerts are waiting).
    pub checkpoint_every: Duration,
    pub max_batch: usize,
    /// Stop once every assigned partition is caught up and idle this long (tests, benches).
    pub stop_when_idle: Option<Duration>,
}

impl EngineConfig {
    pub fn new(kafka: KafkaConfig) -> Self {
        EngineConfig {
            kafka,
            watermark_bound: Duration::from_secs(5),
            idle_after: Duration::from_secs(10),
            checkpoint_every: Duration::from_millis(500),
            max_batch: 5_000,
            stop_when_idle: None,
        }
    }

    /// The consumer group (and checkpoint namespace) of a processor.
    pub fn group(&self, processor: &str) -> String {
        format!("{}shopstream-stream-{processor}", self.kafka.topic_prefix)
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Records handled, including those filtered.
    pub processed: u64,
    /// Records of types the processor does not want ([`Processor::wants`]), not decoded.
    pub filtered: u64,
    pub skipped_replayed: u64,
    pub dead_lettered: u64,
    pub late: u64,
    pub checkpoints: u64,
    pub fenced: u64,
    /// From the first record polled to the end of the last batch that had records: the
    /// time spent processing, without start-up (group join) and the idle wait at the end.
    pub active: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("Kafka consumer: {0}")]
    Consumer(#[from] rdkafka::error::KafkaError),
    #[error("PostgreSQL: {0}")]
    Db(#[from] sqlx::Error),
    #[error("checkpoint state of {processor}/{shard} is unreadable: {source}")]
    State {
        processor: String,
        shard: String,
        source: serde_json::Error,
    },
}

struct Shard<S> {
    state: S,
    offsets: BTreeMap<(String, i32), i64>,
    version: i64,
    watermark: Millis,
    dirty: bool,
    partitions: Vec<(String, i32)>,
}

fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Runs one processor until `shutdown` resolves (or, with `stop_when_idle`, until caught up).
pub async fn run<P: Processor>(
    mut processor: P,
    pool: PgPool,
    cfg: EngineConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, EngineError> {
    use futures::FutureExt;
    tokio::pin!(shutdown);
    let names = cfg.kafka.topic_names();
    let group = cfg.group(processor.name());
    let topics: Vec<(Topic, String)> = processor
        .inputs()
        .into_iter()
        .map(|t| (t, names.name(t)))
        .collect();
    let by_name: HashMap<String, Topic> = topics.iter().map(|(t, n)| (n.clone(), *t)).collect();
    let consumer: StreamConsumer = cfg
        .kafka
        .consumer_config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "20")
        .create()
        .map_err(|source| KafkaError::Setup {
            what: "stream consumer",
            brokers: cfg.kafka.brokers.clone(),
            source,
        })?;
    let producer = EventProducer::new(&cfg.kafka)?;
    let mode = processor.mode();

    // A global processor reads all partitions of its topics: in event-time order while
    // catching up (see `align`).
    let mut aligner = Aligner::new(ALIGN_BUFFER);
    // A global processor leads alone: hold the advisory lock for the whole run.
    let _leader = match mode {
        Mode::Global => {
            let lock = acquire_leader(&pool, &group, &mut shutdown).await?;
            let Some(lock) = lock else {
                return Ok(RunReport::default());
            };
            let cp = load_checkpoint(&pool, &group, "all").await?;
            let mut tpl = TopicPartitionList::new();
            for (_, name) in &topics {
                let md = consumer.fetch_metadata(Some(name), Duration::from_secs(10))?;
                let parts = md
                    .topics()
                    .first()
                    .map(|t| t.partitions().len())
                    .unwrap_or(0);
                for p in 0..parts as i32 {
                    let (low, high) =
                        consumer.fetch_watermarks(name, p, Duration::from_secs(10))?;
                    let off = cp
                        .as_ref()
                        .and_then(|c| c.1.get(&(name.clone(), p)).copied())
                        .map(Offset::Offset)
                        .unwrap_or(Offset::Beginning);
                    let next = match off {
                        Offset::Offset(o) => o.max(low),
                        _ => low,
                    };
                    aligner.track(name, p, next, high);
                    tpl.add_partition_offset(name, p, off)?;
                }
            }
            consumer.assign(&tpl)?;
            Some(lock)
        }
        Mode::Partitioned => {
            let refs: Vec<&str> = topics.iter().map(|(_, n)| n.as_str()).collect();
            consumer.subscribe(&refs)?;
            None
        }
    };

    let mut shards: HashMap<String, Shard<P::State>> = HashMap::new();
    let mut clocks = Watermarks::new(
        cfg.watermark_bound.as_millis() as Millis,
        cfg.idle_after.as_millis() as Millis,
    );
    let mut report = RunReport::default();
    let mut out = Out::default();
    let mut last_checkpoint = Instant::now();
    let mut checkpoint_cost = Duration::ZERO;
    let mut last_record = Instant::now();
    // Partitions whose next records must be ignored until the consumer re-positions.
    let mut seeks = Seeks::default();
    // One stream for the whole run: `recv` makes (and registers a waker for) a new one per
    // record.
    let mut stream = consumer.stream();
    let mut first_record: Option<Instant> = None;

    loop {
        seeks.round += 1;
        let stopping = (&mut shutdown).now_or_never().is_some();
        let mut idle_done = cfg
            .stop_when_idle
            .is_some_and(|d| last_record.elapsed() >= d);
        // Quiet is not enough (a slow fetch under load is quiet too): stop only caught up.
        if idle_done && (aligner.buffered() > 0 || !caught_up(&consumer)) {
            idle_done = false;
            last_record = Instant::now();
        }
        if stopping || idle_done {
            let dropped = checkpoint(
                &mut processor,
                &pool,
                &producer,
                &names,
                &group,
                &consumer,
                &mut shards,
                &mut out,
                &mut report,
            )
            .await?;
            // Stopping on request, dropped work is redone by the next run from the
            // checkpoints; stopping because idle, it must be redone now.
            if stopping || dropped.is_empty() {
                return Ok(report);
            }
            rewind(&consumer, &pool, &group, dropped, &mut seeks, &mut clocks).await?;
            last_record = Instant::now();
            continue;
        }

        let mut batch = poll_batch(&mut stream, cfg.max_batch, &group).await?;
        let had_records = !batch.is_empty();
        if had_records {
            last_record = Instant::now();
            first_record.get_or_insert(last_record);
        }
        if mode == Mode::Global {
            for m in batch.drain(..) {
                aligner.push(m);
            }
            batch = aligner.release(&consumer);
        }
        processor.between_batches();
        let now = now_ms();
        // Records come in runs per partition: the shard, the topic and the partition's clock
        // are settled once per run, not per record.
        let mut rest = &batch[..];
        while let Some(first) = rest.first() {
            let (part, handle) = (first.partition(), topic_handle(first));
            let len = rest
                .iter()
                .position(|m| m.partition() != part || topic_handle(m) != handle)
                .unwrap_or(rest.len());
            let (run, next) = rest.split_at(len);
            rest = next;
            let key = (first.topic().to_owned(), part);
            let topic = by_name[&key.0];
            let shard_id = match mode {
                Mode::Global => "all".to_owned(),
                Mode::Partitioned => format!("{}:{}", key.0, key.1),
            };
            // Records before a pending seek's offset are not admitted; the shard is loaded for
            // the first that is.
            let mut start = None;
            for (i, m) in run.iter().enumerate() {
                if seeks.admits(&consumer, &group, &key, m.offset(), mode)? {
                    start = Some(i);
                    break;
                }
            }
            let Some(start) = start else {
                continue;
            };
            if !shards.contains_key(&shard_id) {
                let loaded = load_shard(&processor, &pool, &group, &shard_id).await?;
                shards.insert(shard_id.clone(), loaded);
            }
            let shard = shards.get_mut(&shard_id).expect("loaded above");
            if !shard.partitions.contains(&key) {
                shard.partitions.push(key.clone());
            }
            // The run's latest event time, for the partition's clock.
            let mut max_ts: Option<Millis> = None;
            for (i, m) in run.iter().enumerate().skip(start) {
                if i > start && !seeks.admits(&consumer, &group, &key, m.offset(), mode)? {
                    continue;
                }
                match shard.offsets.get_mut(&key) {
                    Some(next) if m.offset() < *next => {
                        report.skipped_replayed += 1;
                        continue;
                    }
                    Some(next) if m.offset() > *next => {
                        // The consumer is ahead of the checkpoint (another instance's commit,
                        // or a fenced shard): go back so nothing between is missed.
                        let next = *next;
                        seeks.ask(
                            &consumer,
                            &group,
                            &key,
                            next,
                            "consumer ahead of the checkpoint",
                        )?;
                        continue;
                    }
                    Some(next) => *next = m.offset() + 1,
                    None => {
                        shard.offsets.insert(key.clone(), m.offset() + 1);
                    }
                }
                shard.dirty = true;
                // A record of a type the processor does not handle only moves its partition's
                // clock, read from the `ce_time` header without decoding the payload.
                if let Some(ts) = unwanted_event_time(&processor, m) {
                    max_ts = max_ts.max(Some(ts));
                    report.processed += 1;
                    report.filtered += 1;
                    continue;
                }
                let envelope = match decode_message(m) {
                    Ok(e) => e,
                    Err(e) => {
                        let dlq_topic = TopicNames::dlq_of(&key.0);
                        tracing::warn!(topic = %key.0, partition = part, offset = m.offset(),
                            error = %e, %dlq_topic, "undecodable record routed to the DLQ");
                        let headers = dlq::dlq_headers(m, &group, e.kind(), &e.to_string());
                        producer
                            .send_raw(&dlq_topic, m.key(), m.payload(), headers)
                            .await?;
                        report.dead_lettered += 1;
                        continue;
                    }
                };
                let ts = envelope.time.timestamp_millis();
                max_ts = max_ts.max(Some(ts));
                let input = In {
                    topic,
                    partition: part,
                    offset: m.offset(),
                    envelope: &envelope,
                    ts,
                };
                processor.on_event(&mut shard.state, &input, &mut out);
                report.processed += 1;
            }
            if let Some(ts) = max_ts {
                clocks.observe(&key, ts, now);
            }
        }

        if let (true, Some(first)) = (had_records, first_record) {
            report.active = first.elapsed();
        }

        // Watermarks: a shard follows its own partitions, and idle ones follow the rest.
        settle_idle(&consumer, &mut clocks, now);
        let instance_wm = clocks.watermark(now, None);
        for shard in shards.values_mut() {
            // Without a clock of its own (every record so far was a replay below its
            // checkpoint, or it is being sought back) a shard keeps its checkpointed
            // watermark: taking the others' would make its next records late, though they
            // are not. Otherwise the instance's watermark is the greater only when all of
            // the shard's partitions are idle.
            let Some(own) = clocks.watermark(now, Some(&shard.partitions)) else {
                continue;
            };
            let wm = instance_wm.map_or(own, |i| own.max(i));
            if wm > shard.watermark {
                shard.watermark = wm;
                shard.dirty = true;
                processor.on_watermark(&mut shard.state, wm, &mut out);
            }
        }

        // A checkpoint stops processing while it runs, so a global processor's one large
        // state is checkpointed less often: at most ~1 % of the time goes to checkpoints
        // (capped at a minute between); its alerts do not wait for checkpoints. Partitioned
        // processors keep the configured interval: their sink rows (metrics) are only
        // written by checkpoints, so it is also their freshness.
        let every = match mode {
            Mode::Global => cfg
                .checkpoint_every
                .max(checkpoint_cost * 100)
                .min(Duration::from_secs(60).max(cfg.checkpoint_every)),
            Mode::Partitioned => cfg.checkpoint_every,
        };
        if out.urgent && mode == Mode::Global && last_checkpoint.elapsed() < every {
            flush_urgent(&pool, &producer, &mut out).await?;
        }
        if out.urgent || last_checkpoint.elapsed() >= every {
            let started = Instant::now();
            let dropped = checkpoint(
                &mut processor,
                &pool,
                &producer,
                &names,
                &group,
                &consumer,
                &mut shards,
                &mut out,
                &mut report,
            )
            .await?;
            rewind(&consumer, &pool, &group, dropped, &mut seeks, &mut clocks).await?;
            last_checkpoint = Instant::now();
            checkpoint_cost = started.elapsed();
        }

        // Partitions revoked in a rebalance: once their state is checkpointed, drop it (a
        // save after the new owner took over is fenced, so either way nothing is lost).
        if mode == Mode::Partitioned {
            let assigned = assigned(&consumer)?;
            shards.retain(|_, s| s.dirty || s.partitions.iter().all(|p| assigned.contains(p)));
            let held: HashSet<(String, i32)> = shards
                .values()
                .flat_map(|s| s.partitions.iter().cloned())
                .collect();
            clocks.retain(|k| held.contains(k) || assigned.contains(k));
            // A seek of a partition given away is void (its next owner starts where the
            // checkpoint says).
            seeks.pending.retain(|k, _| assigned.contains(k));
        }
    }
}

/// Delivers the events and the one-per-key rows (alerts, blocks, anomalies) of a batch at
/// once, ahead of the checkpoint that records its offsets and state: a full checkpoint of a
/// large state takes far longer than an alert may. Still exactly-once: the rows are insert-
/// if-absent by a key derived from the input (one alert per order), the events carry the
/// same derived ids, so a replay after a crash repeats them harmlessly. Only for global
/// processors, which lead alone, so no zombie instance writes beside the owner; metric rows
/// (absolute values per shard) and late records wait for the checkpoint.
async fn flush_urgent(
    pool: &PgPool,
    producer: &EventProducer,
    out: &mut Out,
) -> Result<(), EngineError> {
    let (events, rest): (Vec<OutRecord>, Vec<OutRecord>) = std::mem::take(&mut out.records)
        .into_iter()
        .partition(|r| matches!(r, OutRecord::Event(_)));
    out.records = rest;
    let (now, later): (Vec<Row>, Vec<Row>) = std::mem::take(&mut out.rows)
        .into_iter()
        .partition(|r| !matches!(r, Row::Metric { .. }));
    out.rows = later;
    let sends = events.iter().map(|r| async move {
        match r {
            OutRecord::Event(env) => producer.publish(env).await.map(|_| ()),
            _ => Ok(()),
        }
    });
    for r in futures::future::join_all(sends).await {
        r?;
    }
    if !now.is_empty() {
        let mut tx = pool.begin().await?;
        sink::write(&mut tx, &now).await?;
        tx.commit().await?;
    }
    out.urgent = false;
    Ok(())
}

/// Sorts the partitions that went quiet into idle ones (read to their end) and busy ones
/// (records left that the consumer has not got to): only the idle may stop holding the
/// watermark back, or a lagging partition's records would come late.
fn settle_idle(consumer: &StreamConsumer, clocks: &mut Watermarks, now: Millis) {
    let quiet = clocks.unconfirmed_idle(now);
    if quiet.is_empty() {
        return;
    }
    let position = consumer.position().ok();
    for key in quiet {
        let at = position
            .as_ref()
            .and_then(|l| l.find_partition(&key.0, key.1))
            .map(|p| p.offset());
        let high = consumer.fetch_watermarks(&key.0, key.1, Duration::from_secs(2));
        match (at, high) {
            // Not assigned here any more (a revoked shard awaiting its checkpoint): idle.
            (None, _) => clocks.confirm_idle(&key),
            (Some(Offset::Offset(o)), Ok((_, high))) if o >= high => clocks.confirm_idle(&key),
            // Records left, a position not known yet, or no answer: keep waiting for it.
            (Some(at), high) => {
                tracing::debug!(topic = %key.0, partition = key.1, ?at, ?high,
                    "a quiet partition still has records to read: it holds the watermark");
                clocks.still_busy(&key, now);
            }
        }
    }
}

/// Whether every assigned partition has been read to its end (tests and benches stop then).
fn caught_up(consumer: &StreamConsumer) -> bool {
    let Ok(assigned) = consumer.assignment() else {
        return false;
    };
    let Ok(position) = consumer.position() else {
        return false;
    };
    // Where nothing was fetched yet, the position is unknown: the committed offset says
    // where this group stands (the engine commits after every checkpoint).
    let committed = consumer
        .committed_offsets(assigned.clone(), Duration::from_secs(5))
        .ok();
    assigned.elements().iter().all(|e| {
        let Ok((low, high)) =
            consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
        else {
            return false;
        };
        let at = |l: Option<&TopicPartitionList>| match l
            .and_then(|l| l.find_partition(e.topic(), e.partition()))
            .map(|p| p.offset())
        {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        match at(Some(&position)).or_else(|| at(committed.as_ref())) {
            Some(o) => o >= high,
            // Nothing read or committed: caught up only if there is nothing to read.
            None => low >= high,
        }
    })
}

/// The event time of a record the processor does not want, from its headers; `None` when it
/// wants the record or its headers do not name a known type and a valid time (then it is
/// decoded in full, and dead-lettered if undecodable).
fn unwanted_event_time<P: Processor>(processor: &P, m: &BorrowedMessage<'_>) -> Option<Millis> {
    let event_type = std::str::from_utf8(consumed_header(m, TYPE_HEADER)?).ok()?;
    if processor.wants(event_type) || Event::topic_of(event_type).is_none() {
        return None;
    }
    let time = std::str::from_utf8(consumed_header(m, TIME_HEADER)?).ok()?;
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The address of a message's librdkafka topic handle: records of one topic share it, so
/// runs of a partition are found without building each record's topic name (an FFI call,
/// `strlen` and a UTF-8 check). An address, not a pointer, so the run loop stays `Send`.
fn topic_handle(m: &BorrowedMessage<'_>) -> usize {
    // SAFETY: `ptr` is the live message this borrow keeps alive; reading a field of it.
    unsafe { (*m.ptr()).rkt as usize }
}

/// A shard from its checkpoint, or new.
async fn load_shard<P: Processor>(
    processor: &P,
    pool: &PgPool,
    group: &str,
    shard_id: &str,
) -> Result<Shard<P::State>, EngineError> {
    Ok(match load_checkpoint(pool, group, shard_id).await? {
        Some((version, offsets, watermark, state)) => Shard {
            state: serde_json::from_value(state).map_err(|source| EngineError::State {
                processor: group.to_owned(),
                shard: shard_id.to_owned(),
                source,
            })?,
            offsets,
            version,
            watermark,
            dirty: false,
            partitions: Vec::new(),
        },
        None => Shard {
            state: processor.new_state(),
            offsets: BTreeMap::new(),
            version: 0,
            watermark: Millis::MIN,
            dirty: false,
            partitions: Vec::new(),
        },
    })
}

/// Up to `max` records, borrowed from the consumer: copying them out (payload, key and each
/// header) took about a fifth of a stateless processor's time.
async fn poll_batch<'c>(
    stream: &mut MessageStream<'c, DefaultConsumerContext>,
    max: usize,
    group: &str,
) -> Result<Vec<BorrowedMessage<'c>>, EngineError> {
    let mut out = Vec::new();
    let mut until = Instant::now() + Duration::from_millis(100);
    loop {
        // A record already fetched is taken without arming a timer; only an empty queue waits.
        let next = match stream.next().now_or_never() {
            Some(r) => Ok(r),
            None => tokio::time::timeout_at(until, stream.next()).await,
        };
        match next {
            Err(_) => return Ok(out),
            Ok(None) => unreachable!("a Kafka message stream never ends"),
            Ok(Some(Ok(m))) => {
                out.push(m);
                if out.len() == 1 {
                    until = Instant::now() + Duration::from_millis(20);
                }
                if out.len() >= max {
                    return Ok(out);
                }
            }
            Ok(Some(Err(e @ rdkafka::error::KafkaError::MessageConsumptionFatal(_)))) => {
                return Err(e.into());
            }
            Ok(Some(Err(e))) => {
                tracing::warn!(%group, error = %e, "transient consume error, continuing");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(out);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn checkpoint<P: Processor>(
    processor: &mut P,
    pool: &PgPool,
    producer: &EventProducer,
    names: &TopicNames,
    group: &str,
    consumer: &StreamConsumer,
    shards: &mut HashMap<String, Shard<P::State>>,
    out: &mut Out,
    report: &mut RunReport,
) -> Result<Vec<Dropped>, EngineError> {
    for (id, shard) in shards.iter_mut().filter(|(_, s)| s.dirty) {
        processor.on_checkpoint(&mut shard.state, id, out);
    }
    // 1. Outputs to Kafka, delivered before anything is marked done.
    let late = out
        .records
        .iter()
        .filter(|r| matches!(r, OutRecord::Late { .. }))
        .count() as u64;
    if late > 0 {
        report.late += late;
        tracing::debug!(%group, late, total = report.late,
            "records past the allowed lateness, routed to the late topic");
    }
    let sends = out.records.drain(..).map(|r| async move {
        match r {
            OutRecord::Event(env) => producer.publish(&env).await.map(|_| ()),
            OutRecord::Json { topic, key, value } => {
                let payload = serde_json::to_vec(&value).unwrap_or_default();
                let headers = OwnedHeaders::new().insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                });
                producer
                    .send_raw(
                        &names.name(topic),
                        Some(key.as_bytes()),
                        Some(&payload),
                        headers,
                    )
                    .await
                    .map(|_| ())
            }
            OutRecord::Late { envelope, origin } => {
                let headers = envelope_headers(&envelope).insert(Header {
                    key: "late.origin",
                    value: Some(origin.as_bytes()),
                });
                producer
                    .send_raw(
                        &names.name(Topic::LateEvents),
                        Some(envelope.key().as_bytes()),
                        Some(&envelope.payload()),
                        headers,
                    )
                    .await
                    .map(|_| ())
            }
        }
    });
    for r in futures::future::join_all(sends).await {
        r?;
    }
    // 2. Sinks and state in one transaction, fenced per shard.
    let rows = std::mem::take(&mut out.rows);
    out.urgent = false;
    let mut tx = pool.begin().await?;
    sink::write(&mut tx, &rows).await?;
    let mut fenced = Vec::new();
    let mut saved = Vec::new();
    for (id, shard) in shards.iter_mut().filter(|(_, s)| s.dirty) {
        let offsets: BTreeMap<String, i64> = shard
            .offsets
            .iter()
            .map(|((t, p), o)| (format!("{t}\u{1f}{p}"), *o))
            .collect();
        // Straight to text (no `Value` tree in between: it was a large share of a checkpoint).
        let state = serde_json::to_string(&shard.state).map_err(|source| EngineError::State {
            processor: group.to_owned(),
            shard: id.clone(),
            source,
        })?;
        let wm = (shard.watermark != Millis::MIN).then_some(shard.watermark);
        let ok = if shard.version == 0 {
            sqlx::query(
                "INSERT INTO streams.checkpoints (processor, shard, version, offsets, watermark, state)
                 VALUES ($1, $2, 1, $3, $4, $5::text::jsonb) ON CONFLICT DO NOTHING",
            )
            .bind(group)
            .bind(id)
            .bind(sqlx::types::Json(&offsets))
            .bind(wm)
            .bind(&state)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            sqlx::query(
                "UPDATE streams.checkpoints SET version = version + 1, offsets = $4, watermark = $5,
                        state = $6::text::jsonb, updated_at = now()
                 WHERE processor = $1 AND shard = $2 AND version = $3",
            )
            .bind(group)
            .bind(id)
            .bind(shard.version)
            .bind(sqlx::types::Json(&offsets))
            .bind(wm)
            .bind(&state)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        };
        if ok {
            saved.push(id.clone());
        } else {
            fenced.push(id.clone());
        }
    }
    if !fenced.is_empty() {
        // Another instance owns these shards now: nothing of this batch may land.
        tx.rollback().await?;
        tracing::warn!(%group, shards = ?fenced, "checkpoint fenced by a newer owner; dropping the shards");
        report.fenced += fenced.len() as u64;
        // The rows of the other shards are lost with the rollback: reload them too.
        let dropped = fenced
            .into_iter()
            .chain(saved)
            .filter_map(|id| shards.remove(&id).map(|s| (id, s.partitions)))
            .collect();
        return Ok(dropped);
    }
    tx.commit().await?;
    report.checkpoints += 1;
    // 3. Offsets to Kafka only now (lag monitoring; the checkpoint is the source of truth).
    let mut tpl = TopicPartitionList::new();
    for id in &saved {
        let shard = shards.get_mut(id).expect("saved shard");
        shard.version += 1;
        shard.dirty = false;
        for ((t, p), o) in &shard.offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
    {
        tracing::debug!(%group, error = %e, "offset commit failed (the checkpoint holds them)");
    }
    metrics::counter!("shopstream_stream_checkpoints_total", "processor" => group.to_owned())
        .increment(1);
    Ok(Vec::new())
}

/// The partitions this instance holds now.
fn assigned(consumer: &StreamConsumer) -> Result<HashSet<(String, i32)>, EngineError> {
    Ok(consumer
        .assignment()?
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect())
}

/// A shard a checkpoint dropped unsaved, with the partitions it had read.
type Dropped = (String, Vec<(String, i32)>);

/// Partitions being re-positioned: the records fetched before a seek took effect are ignored
/// until the one sought arrives.
#[derive(Default)]
struct Seeks {
    /// Per partition, the offset sought and the round it was asked in.
    pending: HashMap<(String, i32), (i64, u64)>,
    /// The engine loop's pass (one poll) now.
    round: u64,
}

impl Seeks {
    /// Sends the consumer back to `offset` on `key` and ignores its records until then.
    fn ask(
        &mut self,
        consumer: &StreamConsumer,
        group: &str,
        key: &(String, i32),
        offset: i64,
        why: &str,
    ) -> Result<(), EngineError> {
        tracing::info!(%group, topic = %key.0, partition = key.1, offset, why, "seeking");
        consumer.seek(
            &key.0,
            key.1,
            Offset::Offset(offset),
            Duration::from_secs(5),
        )?;
        self.pending.insert(key.clone(), (offset, self.round));
        Ok(())
    }

    /// Whether the record at `offset` of `key` is to be processed (false while a seek is
    /// pending and this is not the record sought).
    fn admits(
        &mut self,
        consumer: &StreamConsumer,
        group: &str,
        key: &(String, i32),
        offset: i64,
        mode: Mode,
    ) -> Result<bool, EngineError> {
        let Some(&(want, asked)) = self.pending.get(key) else {
            return Ok(true);
        };
        // Past the offset sought, in a later round: the seek was lost (the partition was
        // revoked and assigned again, and restarted from its committed offset). Ask again
        // rather than skip the partition for good. (A global processor assigns its
        // partitions itself, so it never loses a seek that way, and its aligner may release
        // records fetched long before.) Below the offset: fetched before the seek.
        if offset > want && asked < self.round && mode == Mode::Partitioned {
            self.ask(consumer, group, key, want, "the last seek was lost")?;
        }
        if offset != want {
            return Ok(false);
        }
        self.pending.remove(key);
        Ok(true)
    }
}

/// Sends the consumer back to the checkpointed offsets of dropped shards' partitions that
/// this instance still holds: the work since their checkpoint was thrown away, and the
/// records are not re-delivered by themselves (at the end of a partition none would come,
/// so the shard would never be re-read). Partitions another instance holds now are its work.
async fn rewind(
    consumer: &StreamConsumer,
    pool: &PgPool,
    group: &str,
    dropped: Vec<Dropped>,
    seeks: &mut Seeks,
    clocks: &mut Watermarks,
) -> Result<(), EngineError> {
    if dropped.is_empty() {
        return Ok(());
    }
    let assigned = assigned(consumer)?;
    for (shard, partitions) in dropped {
        let saved = load_checkpoint(pool, group, &shard).await?;
        for key in partitions.into_iter().filter(|k| assigned.contains(k)) {
            let next = match saved.as_ref().and_then(|c| c.1.get(&key).copied()) {
                Some(o) => o,
                None => {
                    consumer
                        .fetch_watermarks(&key.0, key.1, Duration::from_secs(10))?
                        .0
                }
            };
            seeks.ask(
                consumer,
                group,
                &key,
                next,
                "re-reading after a fenced checkpoint",
            )?;
            // Its event-time clock starts over with the records read again: kept at the
            // end of the input, it would make them late.
            clocks.retain(|k| *k != key);
        }
    }
    Ok(())
}

/// (version, offsets, watermark, state) as stored.
type CheckpointRow = (
    i64,
    sqlx::types::Json<BTreeMap<String, i64>>,
    Option<i64>,
    serde_json::Value,
);

type Loaded = (i64, BTreeMap<(String, i32), i64>, Millis, serde_json::Value);

async fn load_checkpoint(
    pool: &PgPool,
    group: &str,
    shard: &str,
) -> Result<Option<Loaded>, EngineError> {
    let row: Option<CheckpointRow> = sqlx::query_as(
        "SELECT version, offsets, watermark, state FROM streams.checkpoints
             WHERE processor = $1 AND shard = $2",
    )
    .bind(group)
    .bind(shard)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(v, offsets, wm, state)| {
        let offsets = offsets
            .0
            .into_iter()
            .filter_map(|(k, o)| {
                let (t, p) = k.split_once('\u{1f}')?;
                Some(((t.to_owned(), p.parse().ok()?), o))
            })
            .collect();
        (v, offsets, wm.unwrap_or(Millis::MIN), state)
    }))
}

/// Holds the leader lock of a global processor on a connection of its own (detached from the
/// pool, so dropping it closes the session and releases the lock, as a crash does).
pub struct Leader(#[allow(dead_code)] sqlx::PgConnection);

async fn acquire_leader(
    pool: &PgPool,
    group: &str,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<Leader>, EngineError> {
    use futures::FutureExt;
    let mut conn = pool.acquire().await?.detach();
    let mut announced = false;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(group)
            .fetch_one(&mut conn)
            .await?;
        if got {
            tracing::info!(%group, "leading");
            return Ok(Some(Leader(conn)));
        }
        if !announced {
            tracing::info!(%group, "standing by: another instance leads");
            announced = true;
        }
        if shutdown.as_mut().now_or_never().is_some() {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_header_names_are_the_contract_names() {
        assert_eq!(TYPE_HEADER.to_str(), Ok(events::header::TYPE));
        assert_eq!(TIME_HEADER.to_str(), Ok(events::header::TIME));
    }
}
