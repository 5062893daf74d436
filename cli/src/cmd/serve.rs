//! `shopstream serve`, `shopstream relay`, `shopstream migrate`, `shopstream grant`: the
//! services and the outbox relay as separate processes (what `up` runs together), and the
//! operator's way to make the first admin.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use services::http::ops;
use tokio::sync::watch;

use crate::cmd::lifecycle::{stopped, wait_for_signal};
use crate::cmd::platform;
use crate::config::Config;
use crate::telemetry;

/// Serves every implemented service under /v1 plus /livez, /readyz and /metrics.
pub async fn serve(cfg: &Config) -> anyhow::Result<ExitCode> {
    let prometheus = telemetry::init_metrics()?;
    let pool = platform::connect_db(cfg).await?;
    let readiness = ops::Readiness::default();
    readiness.set("postgres", None);
    let state = services::AppState::new(pool.clone(), &cfg.services)
        .with_events(ingest::EventProducer::new(&cfg.kafka)?);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(services::recs::watch(
        state.models.clone(),
        pool.clone(),
        Duration::from_secs(cfg.services.models_reload_secs.max(1)),
        stopped(stop_rx.clone()),
    ));
    let app = services::router(state, &cfg.services).merge(ops::router(prometheus, readiness));
    tokio::spawn(services::upkeep(
        pool,
        Duration::from_secs(30),
        stopped(stop_rx.clone()),
    ));
    let mut server = tokio::spawn(ops::serve(cfg.http.addr, app, stopped(stop_rx)));
    tracing::info!(addr = %cfg.http.addr, "services listening; Ctrl-C stops them");
    tokio::select! {
        _ = wait_for_signal(None) => {
            let _ = stop_tx.send(true);
            server.await??;
        }
        // The server ended by itself, e.g. it could not bind its address.
        r = &mut server => r??,
    }
    Ok(ExitCode::SUCCESS)
}

/// Relays the outbox to Kafka; several relays may run, one leads.
pub async fn relay(cfg: &Config) -> anyhow::Result<ExitCode> {
    let _prometheus = telemetry::init_metrics()?;
    let pool = platform::connect_db(cfg).await?;
    let relay = platform::relay(cfg, pool)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { relay.run(stopped(stop_rx)).await });
    tracing::info!("outbox relay started; Ctrl-C stops it");
    wait_for_signal(None).await;
    let _ = stop_tx.send(true);
    let stats = task.await?.context("outbox relay")?;
    println!("outbox relay stopped: {} events published", stats.published);
    Ok(ExitCode::SUCCESS)
}

/// Applies every migration and exits.
pub async fn migrate(cfg: &Config) -> anyhow::Result<ExitCode> {
    platform::connect_db(cfg).await?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

/// Sets an account's roles.
pub async fn grant(
    cfg: &Config,
    email: &str,
    roles: &[events::domain::users::Role],
) -> anyhow::Result<ExitCode> {
    let pool = platform::connect_db(cfg).await?;
    match services::auth::grant_roles(&pool, email, roles).await? {
        Some(id) => {
            println!("{email} ({id}) now has {roles:?}; it applies from the next login");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("error: no account with the e-mail {email:?}");
            Ok(ExitCode::FAILURE)
        }
    }
}
