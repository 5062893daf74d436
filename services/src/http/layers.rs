//! Middleware every route shares: per-user and per-IP rate limits (429 + Retry-After), and
//! request metrics labelled by route template (never by raw id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::tokens::Claims;
use crate::http::extract::ClientIp;
use crate::http::problem::Problem;

/// Token buckets by key: `rate` tokens per second, up to `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        RateLimiter {
            rate: rate_per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how many seconds until one is free.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let full = self.burst / self.rate;
            map.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() < full);
        }
        let (tokens, at) = map.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// The per-IP and per-user limits, shared by all routes.
pub struct Limits {
    pub per_ip: RateLimiter,
    pub per_user: RateLimiter,
}

/// The claims of the request's bearer token, put in the request's extensions by
/// [`rate_limit`] once their signature, issuer and expiry are checked. Nothing else may
/// make one (`AuthUser` trusts it without checking the signature), so it cannot be named
/// outside this crate.
#[derive(Clone)]
pub(crate) struct VerifiedClaims(pub(crate) Claims);

pub async fn rate_limit(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    mut req: Request,
    next: Next,
) -> Response {
    let limits: &Arc<Limits> = &app.limits;
    if let Err(wait) = limits.per_ip.take(&ip) {
        metrics::counter!("shopstream_http_rate_limited_total", "by" => "ip").increment(1);
        return Problem::too_many_requests(wait).into_response();
    }
    // The user is known from the token's signature alone; revocation is checked later.
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| app.tokens.verify_access(t).ok());
    if let Some(claims) = user {
        if let Err(wait) = limits.per_user.take(&claims.sub.to_string()) {
            metrics::counter!("shopstream_http_rate_limited_total", "by" => "user").increment(1);
            return Problem::too_many_requests(wait).into_response();
        }
        // The route's `AuthUser` takes these instead of checking the signature again.
        req.extensions_mut().insert(VerifiedClaims(claims));
    }
    next.run(req).await
}

pub async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("shopstream_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("shopstream_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    resp
}
