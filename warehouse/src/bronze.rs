//! Bronze: the raw events of each topic family in a Delta table partitioned by event date,
//! loaded from Kafka **exactly once**. Each commit carries, in the same Delta transaction as
//! the rows, one application transaction per Kafka partition it covers
//! (`app_id = shopstream-loader/<topic>/<partition>`, `version` = the last offset written).
//! On start the loader seeks every partition to the version in the table plus one, so a crash
//! at any point neither loses nor duplicates a row: a batch is either committed with its
//! offsets or not at all. Undecodable records go to `<topic>.dlq` (delivered before the commit
//! that moves past them) and loading goes on.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::common::config::ParquetOptions;
use deltalake::DeltaTable;
use deltalake::arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use events::Topic;
use futures::{FutureExt, StreamExt};
use ingest::kafka::dlq::dlq_headers;
use ingest::kafka::{EventProducer, KafkaConfig, KafkaError, decode_message};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::WarehouseError;
use crate::lake::{Lake, Layer};

/// The topic families landed in bronze: every topic of domain events, not the rules,
/// metrics or late-event topics, which are the processors' own.
pub fn families() -> impl Iterator<Item = Topic> {
    Topic::ALL
        .into_iter()
        .filter(|t| !matches!(t, Topic::FraudRules | Topic::Metrics | Topic::LateEvents))
}

/// Where the warm tier of one family ends: its bronze table and, per Kafka partition, the
/// last offset the table holds (`None`: nothing yet).
pub struct WarmEnd {
    pub topic: Topic,
    /// The full topic name (with the prefix).
    pub name: String,
    pub table: DeltaTable,
    pub positions: Vec<(i32, Option<i64>)>,
}

/// A consumer of every family's topic, assigned to start right after what the bronze tables
/// hold (creating missing tables), and where each family's warm tier ends. The loader and the
/// hot tier both start here.
pub async fn consumer_at_warm_end(
    kafka: &KafkaConfig,
    lake: &Lake,
    group: &str,
    fetch_wait_ms: u32,
) -> Result<(StreamConsumer, Vec<WarmEnd>), WarehouseError> {
    let consumer: StreamConsumer = kafka
        .consumer_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .create()
        .map_err(|source| KafkaError::Setup {
            what: "warehouse consumer",
            brokers: kafka.brokers.clone(),
            source,
        })?;
    let names = kafka.topic_names();
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in families() {
        let name = names.name(topic);
        let table = lake
            .open_or_create(Layer::Bronze, &table_name(topic), &schema(), &[DATE_COLUMN])
            .await?;
        let md = consumer.fetch_metadata(Some(&name), Duration::from_secs(10))?;
        let parts = md
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        let snapshot = table.snapshot()?;
        let mut positions = Vec::with_capacity(parts);
        for p in 0..parts as i32 {
            let done = snapshot
                .transaction_version(table.log_store().as_ref(), app_id(&name, p))
                .await?;
            let from = done
                .map(|o| Offset::Offset(o + 1))
                .unwrap_or(Offset::Beginning);
            tpl.add_partition_offset(&name, p, from)?;
            positions.push((p, done));
        }
        ends.push(WarmEnd {
            topic,
            name,
            table,
            positions,
        });
    }
    consumer.assign(&tpl)?;
    Ok((consumer, ends))
}

/// The bronze table name of a family: its topic's base name with `.` as `_`.
pub fn table_name(topic: Topic) -> String {
    topic.base_name().replace(['.', '-'], "_")
}

/// The partition column of bronze and silver tables.
pub const DATE_COLUMN: &str = "event_date";

/// The columns every bronze table has.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(DATE_COLUMN, DataType::Date32, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// The application id under which a partition's offset is stored in the table's log.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("shopstream-loader/{topic}/{partition}")
}

/// Days since 1970-01-01 (Arrow's Date32).
pub fn date32(time: DateTime<Utc>) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (time.date_naive() - epoch).num_days() as i32
}

/// How the loader batches and when it stops.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Commit once this many rows are buffered...
    pub batch_rows: usize,
    /// ...or this long after the first buffered row (the freshness of bronze).
    pub max_wait: Duration,
    /// Stop once every partition is read to its end and nothing came for this long
    /// (tests and benchmarks); `None` runs until shutdown.
    pub stop_when_idle: Option<Duration>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batch_rows: 100_000,
            max_wait: Duration::from_secs(1),
            stop_when_idle: None,
        }
    }
}

/// What a loader run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub rows: u64,
    pub dead_lettered: u64,
    pub commits: u64,
    /// From the first record read to the last commit (the loading time, without idling).
    pub active: Duration,
}

/// Rows of one family waiting for their commit.
pub struct Rows {
    topic: String,
    event_id: StringBuilder,
    event_type: StringBuilder,
    source: StringBuilder,
    subject: StringBuilder,
    event_time: TimestampMicrosecondBuilder,
    event_date: Date32Builder,
    partition: Int32Builder,
    offset: Int64Builder,
    payload: StringBuilder,
    rows: usize,
    /// Last offset buffered (or dead-lettered) per partition.
    last: BTreeMap<i32, i64>,
}

impl Rows {
    pub fn new(topic: String) -> Self {
        Rows {
            topic,
            event_id: StringBuilder::new(),
            event_type: StringBuilder::new(),
            source: StringBuilder::new(),
            subject: StringBuilder::new(),
            event_time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            event_date: Date32Builder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            payload: StringBuilder::new(),
            rows: 0,
            last: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, env: &events::Envelope, partition: i32, offset: i64, payload: &str) {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        self.event_id
            .append_value(env.id.hyphenated().encode_lower(&mut id));
        self.event_type.append_value(env.event_type());
        self.source.append_value(&env.source);
        self.subject.append_option(env.subject.as_deref());
        self.event_time.append_value(env.time.timestamp_micros());
        self.event_date.append_value(date32(env.time));
        self.partition.append_value(partition);
        self.offset.append_value(offset);
        self.payload.append_value(payload);
        self.rows += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty() && self.rows == 0
    }

    /// The buffered rows as one batch (and an empty buffer).
    pub fn finish(&mut self) -> Result<RecordBatch, WarehouseError> {
        Ok(self.take()?.0)
    }

    fn take(&mut self) -> Result<(RecordBatch, Vec<Transaction>), WarehouseError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.subject.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.event_date.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.payload.finish()),
        ];
        let batch = RecordBatch::try_new(schema(), columns)?;
        let txns = std::mem::take(&mut self.last)
            .into_iter()
            .map(|(p, o)| Transaction::new(app_id(&self.topic, p), o))
            .collect();
        self.rows = 0;
        Ok((batch, txns))
    }
}

/// One family as the loader reads it: the rows waiting for their commit and, per Kafka
/// partition, the next offset to read (for "caught up").
struct Family {
    rows: Rows,
    next: HashMap<i32, i64>,
}

/// What the reader hands the writer: each family's rows with the offsets they cover.
type Batch = Vec<(String, RecordBatch, Vec<Transaction>, u64)>;

/// What the writer committed.
#[derive(Default)]
struct Written {
    rows: u64,
    commits: u64,
    last_commit: Option<Instant>,
}

/// Loads every family's topic into its bronze table until `shutdown` turns true (or, with
/// `stop_when_idle`, until caught up). One loader per lake: a lock file refuses a second.
///
/// Reading and committing overlap: a writer task commits the batches in the order they were
/// read, one at a time, while the next batch is read and decoded. At most one batch waits
/// for the writer, so memory stays at about three batches. A batch's dead letters are
/// delivered before it is handed over, so before the commit that moves past them.
pub async fn run_loader(
    kafka: &KafkaConfig,
    lake: &Lake,
    opts: &LoaderOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<LoadReport, WarehouseError> {
    std::fs::create_dir_all(lake.root())?;
    let lock = File::create(lake.root().join("loader.lock"))?;
    if lock.try_lock().is_err() {
        return Err(WarehouseError::Busy(format!(
            "another loader holds {}",
            lake.root().join("loader.lock").display()
        )));
    }

    let (consumer, warm) =
        consumer_at_warm_end(kafka, lake, "shopstream-warehouse-loader", 50).await?;
    let producer = EventProducer::new(kafka)?;

    let mut tables: HashMap<String, DeltaTable> = HashMap::new();
    let mut families: HashMap<String, Family> = HashMap::new();
    for w in warm {
        let next = w
            .positions
            .iter()
            .map(|(p, done)| (*p, done.map(|o| o + 1).unwrap_or(0)))
            .collect();
        let rows = Rows::new(w.name.clone());
        families.insert(w.name.clone(), Family { rows, next });
        tables.insert(w.name, w.table);
    }
    tracing::info!(dir = %lake.root().display(), "warehouse loader started");

    let (to_writer, batches) = mpsc::channel::<Batch>(1);
    let writer = tokio::spawn(write_batches(tables, batches));
    let read = read_batches(
        &consumer,
        &producer,
        &mut families,
        opts,
        &mut shutdown,
        &to_writer,
    )
    .await;
    drop(to_writer);
    // The writer's error explains a failed hand-over, so it comes first.
    let written = writer.await??;
    let (dead_lettered, first_record) = read?;
    drop(lock);
    let active = match (first_record, written.last_commit) {
        (Some(f), Some(l)) => l.saturating_duration_since(f),
        _ => Duration::ZERO,
    };
    Ok(LoadReport {
        rows: written.rows,
        dead_lettered,
        commits: written.commits,
        active,
    })
}

/// The reader half of the loader: consumes, decodes and buffers until shutdown (or idle),
/// handing each due batch to the writer. Returns the records dead-lettered and when the
/// first record came.
async fn read_batches(
    consumer: &StreamConsumer,
    producer: &EventProducer,
    families: &mut HashMap<String, Family>,
    opts: &LoaderOptions,
    shutdown: &mut watch::Receiver<bool>,
    to_writer: &mpsc::Sender<Batch>,
) -> Result<(u64, Option<Instant>), WarehouseError> {
    let mut dead_lettered = 0u64;
    let mut buffered = 0usize;
    let mut first_at: Option<Instant> = None;
    let mut last_record = Instant::now();
    let mut first_record: Option<Instant> = None;
    // One stream for the whole run: `recv` makes (and registers a waker for) one per record.
    let mut stream = consumer.stream();
    // The clock, read after every wait and once per 64 records taken without one (reading it
    // for each record was ~3 % of the loader's profile).
    let mut now = Instant::now();
    let mut unclocked = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // A record already fetched is taken without arming a timer (the common case while
        // loading a backlog); only an empty queue waits, until the batch is due.
        let (got, waited) = match stream.next().now_or_never() {
            Some(m) => (m, false),
            None => {
                let deadline = first_at.map(|t| t + opts.max_wait);
                let wait = deadline
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(200));
                let got = tokio::select! {
                    _ = shutdown.changed() => None,
                    m = tokio::time::timeout(wait, stream.next()) => m.ok().flatten(),
                };
                (got, true)
            }
        };
        unclocked += 1;
        if waited || unclocked >= 64 {
            now = Instant::now();
            unclocked = 0;
        }
        match got {
            None => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "warehouse loader: consume error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                now = Instant::now();
            }
            Some(Ok(msg)) => {
                last_record = now;
                first_record.get_or_insert(now);
                let Some(family) = families.get_mut(msg.topic()) else {
                    continue;
                };
                let (partition, offset) = (msg.partition(), msg.offset());
                family.next.insert(partition, offset + 1);
                match decode_message(&msg) {
                    Ok(env) => {
                        // The payload as it arrived (valid UTF-8 JSON: it just decoded).
                        let text = msg
                            .payload()
                            .and_then(|p| std::str::from_utf8(p).ok())
                            .unwrap_or_default();
                        family.rows.push(&env, partition, offset, text);
                        buffered += 1;
                    }
                    Err(e) => {
                        let headers = dlq_headers(
                            &msg,
                            "shopstream-warehouse-loader",
                            e.kind(),
                            &e.to_string(),
                        );
                        producer
                            .send_raw(
                                &events::TopicNames::dlq_of(msg.topic()),
                                msg.key(),
                                msg.payload(),
                                headers,
                            )
                            .await?;
                        dead_lettered += 1;
                        metrics::counter!("shopstream_warehouse_dead_lettered_total").increment(1);
                    }
                }
                family.rows.last.insert(partition, offset);
                first_at.get_or_insert(now);
            }
        }
        let due = first_at.is_some_and(|t| now.saturating_duration_since(t) >= opts.max_wait);
        if buffered >= opts.batch_rows || due {
            hand_over(families, to_writer).await?;
            buffered = 0;
            first_at = None;
        }
        if let Some(idle) = opts.stop_when_idle
            && first_at.is_none()
            && now.saturating_duration_since(last_record) >= idle
            && caught_up(consumer, families)
        {
            break;
        }
    }
    hand_over(families, to_writer).await?;
    Ok((dead_lettered, first_record))
}

/// Hands every family's buffered rows to the writer as one batch (nothing if none are).
async fn hand_over(
    families: &mut HashMap<String, Family>,
    to_writer: &mpsc::Sender<Batch>,
) -> Result<(), WarehouseError> {
    let mut batch = Batch::new();
    for (name, family) in families.iter_mut() {
        if family.rows.is_empty() {
            continue;
        }
        let n = family.rows.rows as u64;
        let (rows, txns) = family.rows.take()?;
        batch.push((name.clone(), rows, txns, n));
    }
    if batch.is_empty() {
        return Ok(());
    }
    to_writer
        .send(batch)
        .await
        .map_err(|_| WarehouseError::Busy("the loader's writer stopped".into()))
}

/// The writer half of the loader: commits each batch in order, its families side by side
/// (each family's table is its own Delta log, and each commit carries its own offsets, so
/// they need no order among them; committing one after the other left both cores idle while
/// a commit waited on the file system).
async fn write_batches(
    mut tables: HashMap<String, DeltaTable>,
    mut batches: mpsc::Receiver<Batch>,
) -> Result<Written, WarehouseError> {
    let mut written = Written::default();
    while let Some(batch) = batches.recv().await {
        let mut commits = tokio::task::JoinSet::new();
        for (name, rows, txns, n) in batch {
            let table = tables.remove(&name).expect("every family has its table");
            commits.spawn(async move {
                let table = commit(table, &name, rows, txns, n).await?;
                Ok::<_, WarehouseError>((name, table, n))
            });
        }
        while let Some(done) = commits.join_next().await {
            let (name, table, n) = done??;
            tables.insert(name, table);
            written.rows += n;
            written.commits += 1;
        }
        written.last_commit = Some(Instant::now());
    }
    Ok(written)
}

/// Appends envelopes to their families' bronze tables without Kafka (fixtures, imports):
/// `kafka_partition` is -1 and `kafka_offset` counts on from the last append (recorded like
/// the loader's offsets, as `shopstream-loader/<table>/-1`).
pub async fn append(lake: &Lake, envelopes: &[events::Envelope]) -> Result<u64, WarehouseError> {
    let mut tables = HashMap::new();
    let mut pending: HashMap<String, Rows> = HashMap::new();
    let mut next: HashMap<String, i64> = HashMap::new();
    for env in envelopes {
        let name = table_name(env.topic());
        if !tables.contains_key(&name) {
            let t = lake
                .open_or_create(Layer::Bronze, &name, &schema(), &[DATE_COLUMN])
                .await?;
            let done = t
                .snapshot()?
                .transaction_version(t.log_store().as_ref(), app_id(&name, -1))
                .await?;
            next.insert(name.clone(), done.map(|o| o + 1).unwrap_or(0));
            tables.insert(name.clone(), t);
        }
        let offset = next.get_mut(&name).expect("set above");
        let rows = pending
            .entry(name.clone())
            .or_insert_with(|| Rows::new(name.clone()));
        let payload = String::from_utf8(env.payload()).unwrap_or_default();
        rows.push(env, -1, *offset, &payload);
        rows.last.insert(-1, *offset);
        *offset += 1;
    }
    let mut appended = 0;
    for (name, rows) in pending.iter_mut() {
        let n = rows.rows as u64;
        let (batch, txns) = rows.take()?;
        let table = tables.remove(name).expect("every family has its table");
        commit(table, name, batch, txns, n).await?;
        appended += n;
    }
    Ok(appended)
}

/// How bronze files are written: DataFusion's defaults (page statistics, dictionaries) but
/// zstd level 1, not 3, and nothing of either for the columns whose values never repeat.
/// Level 3 was the loader's largest single cost (~15 % of its profile) for files that stay
/// warm a week and are then recompressed at level 6 in cold (`warehouse tier`). A dictionary
/// for event ids and payloads hashed every value only to fall back to plain encoding once its
/// page was full, and min/max statistics of JSON payloads prune nothing.
fn writer_properties() -> Result<WriterProperties, WarehouseError> {
    let mut props = ParquetOptions::default()
        .into_writer_properties_builder()?
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()));
    for column in ["event_id", "payload"] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    Ok(props
        .set_column_statistics_enabled(ColumnPath::from("payload"), EnabledStatistics::None)
        .build())
}

/// Commits one family's rows and the offsets they cover in one Delta transaction; returns
/// the table at its new version.
async fn commit(
    table: DeltaTable,
    name: &str,
    rows: RecordBatch,
    txns: Vec<Transaction>,
    n: u64,
) -> Result<DeltaTable, WarehouseError> {
    let started = Instant::now();
    let table = table
        .write(vec![rows])
        .with_partition_columns([DATE_COLUMN])
        .with_writer_properties(writer_properties()?)
        .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
        .await?;
    metrics::histogram!("shopstream_warehouse_commit_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("shopstream_warehouse_rows_total", "table" => name.to_owned()).increment(n);
    Ok(table)
}

/// Whether every assigned partition has been read to its high watermark.
fn caught_up(consumer: &StreamConsumer, families: &HashMap<String, Family>) -> bool {
    families.iter().all(|(topic, family)| {
        family.next.iter().all(|(p, next)| {
            match consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                Ok((_, high)) => *next >= high,
                Err(_) => false,
            }
        })
    })
}
