//! Process lifecycle shared by long-running commands: a stop signal fanned out to tasks,
//! and waiting for Ctrl-C, SIGTERM or a duration.

use std::time::Duration;

use tokio::sync::watch;

/// Resolves once the stop flag is raised.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

pub async fn wait_for_signal(duration: Option<u64>) {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let timer = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupted, shutting down"),
        _ = term => tracing::info!("terminated, shutting down"),
        _ = timer => tracing::info!("duration reached, shutting down"),
    }
}
