//! Gateway concerns shared by every route: rate limits per IP and per user, CORS.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use services::ServicesConfig;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrations = false)]
async fn rate_limits_answer_429_with_retry_after(pool: PgPool) {
    let by_ip = ServicesConfig {
        rate_limit_ip_per_sec: 1.0,
        ..ServicesConfig::default()
    };
    let app = TestApp::with_config(pool.clone(), by_ip).await;
    let statuses: Vec<StatusCode> = futures::future::join_all(
        (0..3).map(|_| app.call(Method::GET, "/v1/products", None, None)),
    )
    .await
    .into_iter()
    .map(|r| r.status)
    .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        1,
        "{statuses:?}"
    );
    let r = app.call(Method::GET, "/v1/products", None, None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));

    let by_user = ServicesConfig {
        rate_limit_ip_per_sec: 0.0,
        rate_limit_user_per_sec: 1.0,
        ..ServicesConfig::default()
    };
    let app = TestApp::with_config(pool, by_user).await;
    let (_, greedy) = app.quick_user("customer").await;
    let (_, polite) = app.quick_user("customer").await;
    for _ in 0..2 {
        assert_eq!(
            app.call(Method::GET, "/v1/cart", None, Some(&greedy))
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.call(Method::GET, "/v1/cart", None, Some(&greedy))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        app.call(Method::GET, "/v1/cart", None, Some(&polite))
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test(migrations = false)]
async fn cors_allows_the_configured_storefront_origin_only(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/checkout")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type,idempotency-key",
            )
            .body(Body::empty())
            .unwrap()
    };
    let ok = app.raw(preflight("http://localhost:3000")).await;
    assert_eq!(
        ok.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://localhost:3000"
    );
    let other = app.raw(preflight("https://evil.example")).await;
    assert!(
        !other
            .headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
}
