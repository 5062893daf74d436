//! `shopstream up`: everything that exists so far, in one process. Today: the topic
//! catalogue, the services with the ops endpoints, the outbox relay, live simulated traffic
//! and a consumer that counts it; later issues add processors, warehouse and ML serving.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use events::{CATALOGUE, Topic};
use ingest::simulate::{SimConfig, run_live};
use ingest::smoke::CountingSink;
use ingest::{ConsumerOptions, DurableConsumer, EventProducer, TopicAdmin, TopicChange};
use tokio::sync::watch;

use crate::cmd::lifecycle::{stopped, wait_for_signal};
use crate::cmd::platform;
use crate::config::Config;
use crate::telemetry;
use services::http::ops;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Simulated sessions per second (overrides `simulator.sessions_per_sec`; 0 turns the
    /// live traffic off).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
}

async fn sqlx_ping(pool: &sqlx::PgPool) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub async fn run(cfg: &Config, args: UpArgs) -> anyhow::Result<ExitCode> {
    let prometheus = telemetry::init_metrics()?;
    let admin = TopicAdmin::new(&cfg.kafka)?;
    let brokers = admin.broker_count().await?;
    tracing::info!(
        brokers = cfg.kafka.brokers,
        count = brokers,
        "Kafka reachable"
    );

    let changes = admin.apply(&cfg.kafka.topic_names().plan()).await?;
    let created = changes
        .iter()
        .filter(|c| c.1 == TopicChange::Created)
        .count();
    tracing::info!(topics = changes.len(), created, "topic catalogue applied");

    let pool = platform::connect_db(cfg).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let readiness = ops::Readiness::default();
    readiness.set("kafka", None);
    readiness.set("postgres", None);
    let lake = warehouse::Lake::new(&cfg.warehouse.dir);
    let (hot, hot_task) = warehouse::hot::start(
        &cfg.kafka,
        &lake,
        warehouse::hot::HotOptions::default(),
        stop_rx.clone(),
    )
    .await
    .context("warehouse hot tier")?;
    let sql = warehouse::sql::SqlEngine::open_with_hot(lake.clone(), &cfg.warehouse, Some(hot))
        .await
        .context("warehouse SQL")?;
    let state = services::AppState::new(pool.clone(), &cfg.services)
        .with_events(EventProducer::new(&cfg.kafka)?);
    let models = tokio::spawn(services::recs::watch(
        state.models.clone(),
        pool.clone(),
        Duration::from_secs(cfg.services.models_reload_secs.max(1)),
        stopped(stop_rx.clone()),
    ));
    let app = services::router_with(
        state.clone(),
        &cfg.services,
        warehouse::http::router(sql.clone()),
    )
    .merge(ops::router(prometheus, readiness.clone()));
    let server = tokio::spawn(ops::serve(cfg.http.addr, app, stopped(stop_rx.clone())));
    let upkeep = tokio::spawn(services::upkeep(
        pool.clone(),
        Duration::from_secs(30),
        stopped(stop_rx.clone()),
    ));

    // Readiness follows the broker and the database.
    let mut tasks = Vec::new();
    let probe = {
        let readiness = readiness.clone();
        let mut stop = stop_rx.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                let problem = admin.broker_count().await.err().map(|e| e.to_string());
                readiness.set("kafka", problem);
                let problem = sqlx_ping(&pool).await.err();
                readiness.set("postgres", problem);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        })
    };

    tasks.push(tokio::spawn(async move {
        let rows = hot_task.await?.context("warehouse hot tier")?;
        Ok(format!("warehouse hot tier read {rows} rows"))
    }));
    tasks_warehouse(cfg, &lake, sql, state, &stop_rx, &mut tasks);
    {
        // A first fraud model when the registry has none (processors follow promotions).
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            match crate::cmd::ml_fraud::train_initial_if_missing(&cfg).await {
                Ok(Some(v)) => Ok(format!("trained and promoted fraud model {v}")),
                Ok(None) => Ok(String::new()),
                Err(e) => {
                    tracing::warn!(error = %e, "training the first fraud model failed");
                    Ok(String::new())
                }
            }
        }));
    }
    let rate = args.rate.unwrap_or(cfg.simulator.sessions_per_sec);
    let produced = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    {
        let relay = platform::relay(cfg, pool.clone())?;
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let stats = relay.run(stopped(stop)).await.context("outbox relay")?;
            Ok(format!("outbox relay published {} events", stats.published))
        }));
    }
    tasks.extend(
        crate::cmd::stream::spawn(
            cfg,
            &pool,
            crate::cmd::stream::Which::All,
            None,
            stop_rx.clone(),
        )
        .await?,
    );
    if rate > 0.0 {
        let producer = EventProducer::new(&cfg.kafka)?;
        let (p, stop, cfg_sim) = (produced.clone(), stop_rx.clone(), cfg.simulator.clone());
        tasks.push(tokio::spawn(async move {
            let sim = SimConfig {
                seed: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1),
                sessions_per_sec: rate,
                products: cfg_sim.products.max(1),
                customers: cfg_sim.customers.max(1),
                fraud_rate: cfg_sim.fraud_rate.clamp(0.0, 1.0),
                ..SimConfig::default()
            };
            run_live(&producer, sim, &p, stopped(stop))
                .await
                .context("live simulator")
                .map(|_| String::new())
        }));

        let names = cfg.kafka.topic_names();
        let topics: Vec<String> = CATALOGUE
            .iter()
            .filter(|s| s.has_dlq)
            .map(|s| names.name(s.topic))
            .collect();
        let consumer = DurableConsumer::new(
            &cfg.kafka,
            ConsumerOptions::new(format!("{}shopstream-up-counter", names.prefix()), topics),
        )?;
        let (c, stop) = (consumed.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut sink = CountingSink {
                total: c,
                ..CountingSink::default()
            };
            consumer
                .run(&mut sink, stopped(stop))
                .await
                .context("traffic consumer")?;
            Ok(format!("consumed by type: {:?}", sink.by_type))
        }));
    }
    tracing::info!(
        rate,
        addr = %cfg.http.addr,
        orders_topic = cfg.kafka.topic_names().name(Topic::Orders),
        "platform up; Ctrl-C stops it"
    );

    let progress = {
        let (p, c, mut stop) = (produced.clone(), consumed.clone(), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {
                        tracing::info!(produced = p.load(Ordering::Relaxed), consumed = c.load(Ordering::Relaxed), "live traffic");
                    }
                }
            }
        })
    };

    wait_for_signal(args.duration).await;
    let _ = stop_tx.send(true);
    let mut failed = false;
    for t in tasks {
        match t.await {
            Ok(Ok(summary)) if !summary.is_empty() => tracing::info!("{summary}"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failed = true;
                tracing::error!("{e:#}");
            }
            Err(e) => {
                failed = true;
                tracing::error!("task panicked: {e}");
            }
        }
    }
    let _ = progress.await;
    let _ = upkeep.await;
    let _ = models.await;
    let _ = probe.await;
    server.await??;
    println!(
        "shopstream stopped: {} simulated events produced, {} consumed",
        produced.load(Ordering::Relaxed),
        consumed.load(Ordering::Relaxed)
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

type Task = tokio::task::JoinHandle<anyhow::Result<String>>;

/// The warehouse's part of `up`: the loader, the periodic model build and the PostgreSQL-
/// protocol SQL server.
fn tasks_warehouse(
    cfg: &Config,
    lake: &warehouse::Lake,
    sql: Arc<warehouse::sql::SqlEngine>,
    app: services::AppState,
    stop: &watch::Receiver<bool>,
    tasks: &mut Vec<Task>,
) {
    let opts = warehouse::bronze::LoaderOptions {
        batch_rows: cfg.warehouse.batch_rows,
        max_wait: Duration::from_millis(cfg.warehouse.commit_interval_ms),
        stop_when_idle: None,
    };
    let (kafka, l, s) = (cfg.kafka.clone(), lake.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        let r = warehouse::bronze::run_loader(&kafka, &l, &opts, s)
            .await
            .context("warehouse loader")?;
        Ok(format!(
            "warehouse loader: {} rows in {} commits",
            r.rows, r.commits
        ))
    }));
    let every = cfg.warehouse.build_interval_secs;
    if every > 0 {
        let (l, mut s, cfg2) = (lake.clone(), stop.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            let mut builds = 0u64;
            loop {
                tokio::select! {
                    _ = s.wait_for(|v| *v) => break,
                    _ = tokio::time::sleep(Duration::from_secs(every)) => {}
                }
                match warehouse::models::build(&l, false).await {
                    Ok(_) => {
                        builds += 1;
                        if let Err(e) = crate::cmd::ml::train_initial_if_missing(&cfg2).await {
                            tracing::warn!(error = %e, "training the first recommendation model failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "warehouse build failed; retrying next interval")
                    }
                }
            }
            Ok(format!("warehouse: {builds} model builds"))
        }));
    }
    let (addr, mut s) = (cfg.warehouse.pg_addr.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        tokio::select! {
            r = warehouse::pgwire::serve(sql, &addr, app) => r.context("warehouse SQL over the PostgreSQL protocol")?,
            _ = s.wait_for(|v| *v) => {}
        }
        Ok(String::new())
    }));
}
