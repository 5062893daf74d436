//! Writes of concurrent requests done together: one task per kind of write and process
//! takes the jobs queued while its previous statement ran (no added wait) and writes them
//! in one statement. Much of a statement's cost is fixed (executor start-up, plan checks,
//! locks, commit), so sharing it is most of what a small write costs PostgreSQL. At low
//! load a batch is one job.
//!
//! Jobs that share a key (say a SKU) go to separate statements, so a stock check or a
//! stock level written is exact. A statement the database refuses (a refused row, a
//! deadlock) wrote nothing: each of its jobs is answered [`Unbatched::Refused`] and then runs
//! alone through its single statement, getting its own answer. A statement whose outcome is
//! unknown (the connection failed, or its answer could not be read) is never run again:
//! [`Unbatched::Unknown`]. The kinds: the checkout's opening read, placing and
//! confirmation (`orders::batch`) and the add to cart (`cart::batch`).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};

/// Jobs at most per statement.
const MAX_BATCH: usize = 64;

/// A kind of write that concurrent requests share a statement for.
pub trait Work: Send + Sync + 'static {
    /// Its name in metrics and logs.
    const NAME: &'static str;
    type Job: Send + 'static;
    type Out: Send + 'static;
    /// What no two jobs of one statement may share.
    fn keys(job: &Self::Job) -> Vec<String>;
    /// The statement [`Work::run`] runs.
    fn sql() -> &'static str;
    /// Writes `jobs` in one statement on `conn`: each job's answer, in order. An error from
    /// the database itself ([`sqlx::Error::Database`]) must mean nothing was written.
    fn run(
        conn: &mut PgConnection,
        jobs: Vec<Self::Job>,
    ) -> impl Future<Output = Result<Vec<Self::Out>, sqlx::Error>> + Send;
}

/// Why a batch did not answer a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbatched {
    /// Nothing of the job was written (the database refused the statement, or it was never
    /// sent): write it alone.
    Refused,
    /// The statement may have been written (its connection failed, or its answer could not
    /// be read): writing the job again could write it twice.
    Unknown,
}

struct Pending<W: Work> {
    job: W::Job,
    reply: oneshot::Sender<Result<W::Out, Unbatched>>,
}

/// The events of many jobs as one statement's outbox parameters, each with its job's key
/// (`owners`, bound after the events) by which the statement joins it to that job's rows.
#[derive(Default)]
pub(crate) struct JobEvents {
    events: ingest::outbox::OutboxRows,
    owners: Vec<uuid::Uuid>,
}

impl JobEvents {
    /// `events` of the job whose key is `owner`.
    pub(crate) fn add(&mut self, owner: uuid::Uuid, events: ingest::outbox::OutboxRows) {
        self.owners.extend(std::iter::repeat_n(owner, events.len()));
        self.events.append(events);
    }

    /// Binds the events' columns, then their owners.
    pub(crate) fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        self.events.bind(q).bind(self.owners)
    }
}

/// One parameter array of a statement for many jobs: `field` of each of `rows`.
pub(crate) fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

/// The rows of a statement that reads for `jobs` jobs, split by job: each row's `job` column
/// numbers its job from 1, and the rows come ordered by it; every job has at least one row.
pub(crate) fn rows_by_job(rows: Vec<PgRow>, jobs: usize) -> Result<Vec<Vec<PgRow>>, sqlx::Error> {
    let mut split: Vec<Vec<PgRow>> = (0..jobs).map(|_| Vec::new()).collect();
    let mut last = 0;
    for row in rows {
        let job: i64 = row.try_get("job")?;
        let at = usize::try_from(job - 1)
            .ok()
            .filter(|&at| at < jobs && at >= last)
            .ok_or_else(|| sqlx::Error::Protocol(format!("a row of job {job} out of order")))?;
        last = at;
        split[at].push(row);
    }
    if let Some(at) = split.iter().position(Vec::is_empty) {
        return Err(sqlx::Error::Protocol(format!(
            "job {} of the batch has no rows",
            at + 1
        )));
    }
    Ok(split)
}

/// What a [`Batcher`] has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Jobs queued for it (counted once queued).
    pub submitted: u64,
    /// Statements it ran.
    pub batches: u64,
    /// Statements that failed (their jobs were then run alone, unless the outcome was
    /// unknown).
    pub failed_batches: u64,
    /// Most jobs in one statement.
    pub largest: u64,
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    batches: AtomicU64,
    failed_batches: AtomicU64,
    largest: AtomicU64,
}

/// A process's batcher of one kind of write.
pub struct Batcher<W: Work> {
    tx: mpsc::UnboundedSender<Pending<W>>,
    counters: Arc<Counters>,
}

/// The settings of a batcher's own connection. Its statements are planned once per
/// connection (a generic plan), not per call: a custom plan for each batch's array sizes cost
/// as much as running it. And they touch a few rows each, by key: the planner, which gives a
/// generic plan's arrays 10 rows, would read a small table whole (a 1,000-product catalogue
/// by a hash join) rather than look up its keys. With scans and hash and merge joins
/// priced out, every table with a key to look up is read through its index, key by key.
pub const SESSION: [(&str, &str); 4] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];

impl<W: Work> Batcher<W> {
    /// Starts the batching task (inside a Tokio runtime) with a connection of its own to the
    /// database of `pool` (one statement at a time), set as [`SESSION`] says.
    pub fn start(pool: PgPool) -> Batcher<W> {
        let options = (*pool.connect_options()).clone().options(SESSION);
        // Not the pool's 10 s: when the connection cannot be had, the jobs soon run alone.
        let own = ingest::db::pool_options(1)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_lazy_with(options);
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        tokio::spawn(run::<W>(own, rx, counters.clone()));
        Batcher { tx, counters }
    }

    /// Writes the job with the others waiting: its answer, or why the batch gave none.
    pub async fn submit(&self, job: W::Job) -> Result<W::Out, Unbatched> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { job, reply })
            .map_err(|_| Unbatched::Refused)?;
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        // No answer: the task ended mid-statement.
        answer.await.map_err(|_| Unbatched::Unknown)?
    }

    /// Writes the job with the others waiting on the process's batcher in `cell`, started
    /// on first use on the database of `pool`.
    pub async fn submit_to(
        cell: &std::sync::OnceLock<Batcher<W>>,
        pool: &PgPool,
        job: W::Job,
    ) -> Result<W::Out, Unbatched> {
        cell.get_or_init(|| Batcher::start(pool.clone()))
            .submit(job)
            .await
    }

    /// What it has done so far.
    pub fn stats(&self) -> BatchStats {
        let c = &self.counters;
        BatchStats {
            submitted: c.submitted.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
            largest: c.largest.load(Ordering::Relaxed),
        }
    }
}

async fn run<W: Work>(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<Pending<W>>,
    counters: Arc<Counters>,
) {
    // Jobs that shared a key with one in the batch: first in the next.
    let mut carried: VecDeque<Pending<W>> = VecDeque::new();
    loop {
        let first = match carried.pop_front() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut keys: HashSet<String> = W::keys(&first.job).into_iter().collect();
        let mut batch = vec![first];
        let mut take =
            |p: Pending<W>, batch: &mut Vec<Pending<W>>, later: &mut VecDeque<Pending<W>>| {
                let own = W::keys(&p.job);
                if batch.len() < MAX_BATCH && own.iter().all(|k| !keys.contains(k)) {
                    keys.extend(own);
                    batch.push(p);
                } else {
                    later.push_back(p);
                }
            };
        let mut later = VecDeque::new();
        for p in std::mem::take(&mut carried) {
            take(p, &mut batch, &mut later);
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => take(p, &mut batch, &mut later),
                Err(_) => break,
            }
        }
        carried = later;
        let (jobs, replies): (Vec<W::Job>, Vec<_>) =
            batch.into_iter().map(|p| (p.job, p.reply)).unzip();
        let n = jobs.len();
        metrics::histogram!("shopstream_batch_jobs", "work" => W::NAME).record(n as f64);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.largest.fetch_max(n as u64, Ordering::Relaxed);
        let done = match pool.acquire().await {
            Ok(mut conn) => W::run(&mut conn, jobs).await.map_err(|e| {
                let why = match e {
                    sqlx::Error::Database(_) => Unbatched::Refused,
                    _ => Unbatched::Unknown,
                };
                (e, why)
            }),
            Err(e) => Err((e, Unbatched::Refused)),
        };
        match done {
            Ok(answers) => {
                for (answer, reply) in answers.into_iter().zip(replies) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err((e, why)) => {
                counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, jobs = n, work = W::NAME, ?why, "a batch failed");
                for reply in replies {
                    let _ = reply.send(Err(why));
                }
            }
        }
    }
}
