//! `shopstream warehouse ...`: the loader, the model build, SQL from the shell, the SQL
//! servers and attachments.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use tokio::sync::watch;
use warehouse::bronze::{LoaderOptions, run_loader};
use warehouse::distributed::{BallistaSql, Cluster, ExecutorOptions, run_executor, run_scheduler};
use warehouse::http::Format;
use warehouse::sql::{Access, Attachment, SqlEngine, attach};
use warehouse::{Lake, Layer, models};

use crate::cmd::lifecycle::wait_for_signal;
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum WarehouseCommand {
    /// Load every topic family from Kafka into its bronze Delta table, exactly once (offsets
    /// live in the Delta commits). Runs until Ctrl-C.
    Load {
        /// Exit once caught up and idle for this many seconds.
        #[arg(long, value_name = "SECONDS")]
        until_idle: Option<u64>,
    },
    /// Build silver (only the dates whose bronze changed) and gold (facts and daily models:
    /// only the dates those changes affect; dimensions and scores: when what they read changed).
    Build {
        /// Re-derive every date of silver and every gold model whole.
        #[arg(long)]
        full: bool,
    },
    /// Run one read-only SQL statement and print the answer.
    Sql {
        /// The statement, e.g. "SELECT * FROM daily_revenue ORDER BY order_date".
        sql: String,
        /// Query every layer (bronze, silver, unmasked) instead of the analysts' gold view.
        #[arg(long, conflicts_with = "ballista")]
        admin: bool,
        /// Run it on Ballista over the gold tables: `standalone` (scheduler and executor in
        /// this process) or a scheduler `df://host:port` whose executors see the lake's paths.
        #[arg(long, value_name = "CLUSTER")]
        ballista: Option<Cluster>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
    },
    /// Serve SQL over the PostgreSQL wire protocol (`warehouse.pg_addr`) until Ctrl-C, with
    /// the hot tier (the last minutes, read live from Kafka) under the bronze tables. Clients
    /// sign in with an access token as the password (`POST /v1/auth/login`) of an account with
    /// the analyst, fraud_analyst or admin role (`shopstream grant`); checked against the
    /// auth database, so PostgreSQL must be up.
    Serve,
    /// Register an outside Parquet, CSV or Delta data set as `ext.<name>` for joins.
    Attach {
        /// Table name under the `ext` schema.
        name: String,
        /// File, directory or Delta table path.
        path: String,
        #[arg(long, default_value = "parquet", value_parser = ["parquet", "csv", "delta"])]
        format: String,
    },
    /// Move bronze partitions older than --cold-after-days to the cold tier (compacted zstd
    /// files clustered by subject), drop cold partitions past --retention-days, vacuum.
    Tier {
        #[arg(long, default_value_t = 7)]
        cold_after_days: u32,
        /// Keep cold partitions this many days (default: forever).
        #[arg(long)]
        retention_days: Option<u32>,
        /// Vacuum files unreferenced for this many hours (Delta's default: 168).
        #[arg(long, default_value_t = 168)]
        vacuum_hours: i64,
    },
    /// List the tables of every layer, and the gold models with what they hold.
    Tables,
    /// Run a Ballista scheduler or executor: a cluster for `warehouse sql --ballista
    /// df://host:port` (docs/ballista.md). Runs until Ctrl-C.
    #[command(subcommand)]
    Ballista(BallistaCommand),
}

#[derive(Debug, Subcommand)]
pub enum BallistaCommand {
    /// The scheduler: plans stages and hands tasks to the executors that joined it.
    Scheduler {
        /// gRPC address to listen on (clients connect as df://host:port).
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
    },
    /// An executor: joins the scheduler, runs tasks, serves stage outputs over Arrow Flight.
    /// It reads the lake's files by path, so it must see the same file system.
    Executor {
        /// The scheduler, host:port.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// Host to bind and advertise to the scheduler and the other executors.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Arrow Flight port.
        #[arg(long, default_value_t = 50051)]
        flight_port: u16,
        /// gRPC port.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks at once (0: every core).
        #[arg(long, default_value_t = 0)]
        vcores: usize,
        /// Directory for stage outputs (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
}

pub async fn run(cfg: &Config, cmd: WarehouseCommand) -> anyhow::Result<ExitCode> {
    let lake = Lake::new(&cfg.warehouse.dir);
    match cmd {
        WarehouseCommand::Load { until_idle } => {
            let (stop_tx, stop_rx) = watch::channel(false);
            let opts = LoaderOptions {
                batch_rows: cfg.warehouse.batch_rows,
                max_wait: Duration::from_millis(cfg.warehouse.commit_interval_ms),
                stop_when_idle: until_idle.map(Duration::from_secs),
            };
            let started = Instant::now();
            let (kafka, lake2) = (cfg.kafka.clone(), lake.clone());
            let task =
                tokio::spawn(async move { run_loader(&kafka, &lake2, &opts, stop_rx).await });
            let report = if until_idle.is_some() {
                task.await?
            } else {
                tokio::select! {
                    r = task => r?,
                    _ = wait_for_signal(None) => {
                        let _ = stop_tx.send(true);
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
            .context("warehouse loader")?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "loaded {} rows in {} commits ({} to the DLQ) in {secs:.1} s into {}",
                report.rows,
                report.commits,
                report.dead_lettered,
                lake.root().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Build { full } => {
            let started = Instant::now();
            let report = models::build(&lake, full)
                .await
                .context("warehouse build")?;
            for (family, dates) in &report.silver_dates {
                println!("silver  {family:<14} {dates} date(s) re-derived");
            }
            println!("silver  {} rows written", report.silver_rows);
            for g in &report.gold {
                match g.scope {
                    models::Scope::Unchanged => println!("gold    {:<20} {}", g.model, g.scope),
                    _ => println!("gold    {:<20} {}, {} rows", g.model, g.scope, g.rows),
                }
            }
            println!("built in {:.1} s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Sql {
            sql,
            admin,
            ballista,
            format,
        } => {
            let who = format!("cli:{}", std::env::var("USER").unwrap_or_default());
            let result = if let Some(cluster) = ballista {
                let engine = BallistaSql::connect(lake, cluster.clone(), &cfg.warehouse)
                    .await
                    .with_context(|| format!("ballista ({cluster})"))?;
                engine.query(&sql, &who).await
            } else {
                let engine = SqlEngine::open(lake, &cfg.warehouse).await?;
                let access = if admin {
                    Access::Admin
                } else {
                    Access::Analyst
                };
                engine.query(&sql, &who, access).await
            };
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            match format {
                OutFormat::Table => {
                    let text = warehouse::datafusion::arrow::util::pretty::pretty_format_batches(
                        &result.batches,
                    )?;
                    println!("{text}\n({} rows)", result.rows());
                }
                OutFormat::Csv | OutFormat::Json => {
                    let f = if format == OutFormat::Csv {
                        Format::Csv
                    } else {
                        Format::Json
                    };
                    let response = warehouse::http::encode(&result, f)?;
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
                    print!("{}", String::from_utf8_lossy(&body));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Ballista(BallistaCommand::Scheduler { bind }) => {
            println!("ballista scheduler on df://{bind}");
            tokio::select! {
                r = run_scheduler(bind) => r.context("ballista scheduler")?,
                _ = wait_for_signal(None) => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Ballista(BallistaCommand::Executor {
            scheduler,
            host,
            flight_port,
            grpc_port,
            vcores,
            work_dir,
        }) => {
            let opts = ExecutorOptions {
                scheduler,
                host,
                flight_port,
                grpc_port,
                vcores,
                work_dir,
            };
            println!(
                "ballista executor on {}:{} (flight) joining {}",
                opts.host, opts.flight_port, opts.scheduler
            );
            tokio::select! {
                r = run_executor(&opts) => r.context("ballista executor")?,
                _ = wait_for_signal(None) => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Serve => {
            let (_stop, rx) = watch::channel(false);
            let (hot, _task) = warehouse::hot::start(&cfg.kafka, &lake, Default::default(), rx)
                .await
                .context("hot tier (is Kafka up?)")?;
            let engine = SqlEngine::open_with_hot(lake, &cfg.warehouse, Some(hot)).await?;
            // Sign-in checks access tokens against the auth service's sessions.
            let pool = crate::cmd::platform::connect_db(cfg)
                .await
                .context("the auth database (sign-in checks sessions there)")?;
            let app = services::AppState::new(pool, &cfg.services);
            let addr = cfg.warehouse.pg_addr.clone();
            println!(
                "PGPASSWORD=<access token> psql -h {} -p {} -U <you>",
                host(&addr),
                port(&addr)
            );
            tokio::select! {
                r = warehouse::pgwire::serve(engine, &addr, app) => r.context("pg server")?,
                _ = wait_for_signal(None) => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Attach { name, path, format } => {
            let schema = attach(
                &lake,
                Attachment {
                    name: name.clone(),
                    path,
                    format,
                },
            )
            .await
            .context("attach")?;
            println!("attached ext.{name}:");
            for f in schema.fields() {
                println!("  {} {}", f.name(), f.data_type());
            }
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Tier {
            cold_after_days,
            retention_days,
            vacuum_hours,
        } => {
            let opts = warehouse::tiers::TierOptions {
                cold_after_days,
                retention_days,
                vacuum_hours,
                ..Default::default()
            };
            let report = warehouse::tiers::tier(&lake, &opts)
                .await
                .context("tiering")?;
            for (table, rows) in &report.moved {
                println!("cold    {table:<14} {rows} rows moved");
            }
            println!(
                "{} cold rows past the retention dropped, {} files vacuumed",
                report.expired, report.vacuumed
            );
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Tables => {
            for layer in Layer::ALL {
                for t in lake.tables(layer) {
                    let about = models::GOLD
                        .iter()
                        .find(|m| layer == Layer::Gold && m.name == t)
                        .map(|m| m.about)
                        .unwrap_or("");
                    println!("{:<7} {t:<28} {about}", layer.name());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}

fn port(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("5433")
}
