//! The operations endpoints of a running process: `/livez` (the process answers),
//! `/readyz` (its dependencies answer) and `/metrics` (Prometheus text format).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

/// One dependency's state: `None` when healthy, else why not.
type DependencyState = (&'static str, Option<String>);

/// Readiness of each dependency, shared between probes and `/readyz`.
#[derive(Clone, Default)]
pub struct Readiness(Arc<RwLock<Vec<DependencyState>>>);

impl Readiness {
    pub fn set(&self, dependency: &'static str, problem: Option<String>) {
        if let Ok(mut deps) = self.0.write() {
            match deps.iter_mut().find(|d| d.0 == dependency) {
                Some(d) => d.1 = problem,
                None => deps.push((dependency, problem)),
            }
        }
    }

    fn report(&self) -> (bool, serde_json::Value) {
        let deps = self.0.read().map(|d| d.clone()).unwrap_or_default();
        let ready = !deps.is_empty() && deps.iter().all(|d| d.1.is_none());
        let detail: serde_json::Map<String, serde_json::Value> = deps
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v.unwrap_or_else(|| "ok".into()))))
            .collect();
        (ready, json!({ "ready": ready, "dependencies": detail }))
    }
}

#[derive(Clone)]
struct OpsState {
    prometheus: PrometheusHandle,
    readiness: Readiness,
}

pub fn router(prometheus: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState {
            prometheus,
            readiness,
        })
}

async fn readyz(State(s): State<OpsState>) -> (StatusCode, Json<serde_json::Value>) {
    let (ready, body) = s.readiness.report();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(s): State<OpsState>) -> String {
    s.prometheus.render()
}

/// Binds `addr` and serves `router` (services, ops endpoints or both) until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e} (set SHOPSTREAM_HTTP_ADDR)"),
        )
    })?;
    tracing::info!(%addr, "serving /livez /readyz /metrics");
    // Connect info gives handlers the peer address (ClientIp, rate limits).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
