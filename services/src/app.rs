//! The services mounted together under `/v1`, with the layers every route shares.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::auth::tokens::TokenKeys;
use crate::auth::{self, LoginLimiter};
use crate::http::Problem;
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
        }
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: Arc<TokenKeys>,
    pub limiter: Arc<LoginLimiter>,
    pub gateway: Arc<Gateway>,
}

impl AppState {
    pub fn new(pool: PgPool, cfg: &ServicesConfig) -> Self {
        if cfg.jwt_secret == DEV_JWT_SECRET {
            tracing::warn!("using the development JWT secret; set services.jwt_secret");
        }
        AppState {
            pool,
            tokens: Arc::new(TokenKeys::new(
                cfg.jwt_secret.as_bytes(),
                Duration::from_secs(cfg.access_ttl_secs),
                Duration::from_secs(cfg.refresh_ttl_secs),
            )),
            limiter: Arc::new(LoginLimiter::default()),
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
    Ok(())
}

/// All services under `/v1`.
pub fn router(state: AppState, cfg: &ServicesConfig) -> Router {
    Router::new()
        .nest("/v1/auth", auth::routes())
        .nest("/v1/products", crate::catalog::routes())
        .nest("/v1/inventory", crate::inventory::routes())
        .nest("/v1/cart", crate::cart::routes())
        .nest("/v1/wishlist", crate::cart::wishlist_routes())
        .nest("/v1/payments", crate::payments::routes())
        .nest("/v1/shipping", crate::shipping::routes())
        .nest("/v1/orders", crate::orders::routes())
        .route(
            "/v1/checkout",
            axum::routing::post(crate::orders::routes::checkout),
        )
        .fallback(|| async { Problem::not_found("no such route") })
        .with_state(state)
        .layer(DefaultBodyLimit::max(cfg.body_limit_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
