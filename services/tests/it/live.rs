//! The live feed: SSE events of metric windows summed over shards, updates as the stream
//! processors upsert their partials, anomalies, filters, resuming with Last-Event-ID, and
//! role checks. Rows are written as the aggregation and anomaly processors write them.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{Method, Request, StatusCode, header};
use futures::StreamExt;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::TestApp;

async fn partial(pool: &PgPool, metric: &str, minute: i64, dims: &str, shard: &str, count: i64) {
    sqlx::query(
        "INSERT INTO streams.metric_partials (metric, window_start, window_end, dims, shard, count, sum)
         VALUES ($1, to_timestamp($2 * 60), to_timestamp(($2 + 1) * 60), $3, $4, $5, $5 * 1000)
         ON CONFLICT (metric, window_start, window_end, dims, shard)
         DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum, updated_at = now()",
    )
    .bind(metric)
    .bind(minute)
    .bind(dims)
    .bind(shard)
    .bind(count)
    .execute(pool)
    .await
    .unwrap();
}

/// An open SSE response, read event by event.
struct Feed {
    body: BodyDataStream,
    buf: String,
}

#[derive(Debug)]
struct SseEvent {
    kind: String,
    id: String,
    data: Value,
}

impl Feed {
    async fn open(app: &TestApp, uri: &str, token: &str, last_id: Option<&str>) -> Feed {
        let mut req = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = app
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/event-stream"
        );
        Feed {
            body: resp.into_body().into_data_stream(),
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); fails after 10 s of silence.
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut kind, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if kind.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return SseEvent { kind, id, data };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("an event within 10 s")
                .expect("the feed stays open")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Skips events until one matches.
    async fn until(&mut self, want: impl Fn(&SseEvent) -> bool) -> SseEvent {
        loop {
            let e = self.next().await;
            if want(&e) {
                return e;
            }
        }
    }
}

fn is_metric(e: &SseEvent, metric: &str, dims: &str) -> bool {
    e.kind == "metric" && e.data["metric"] == metric && e.data["dims"] == dims
}

#[sqlx::test(migrations = false)]
async fn dashboards_see_metric_windows_summed_over_shards_as_they_change(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let (_, analyst) = app.quick_user("analyst").await;
    let minute = chrono::Utc::now().timestamp() / 60;
    partial(&pool, "payments", minute, "sim/approved", "0", 9).await;
    partial(&pool, "orders", minute, "EUR", "0", 2).await;
    partial(&pool, "orders", minute, "EUR", "1", 3).await;

    // The snapshot: the window's value is the sum of both shards; the filter keeps payments out.
    let mut feed = Feed::open(&app, "/v1/live/metrics?metrics=orders", &analyst, None).await;
    let first = feed.next().await;
    assert!(is_metric(&first, "orders", "EUR"), "{first:?}");
    assert_eq!(first.data["count"], 5);
    assert_eq!(first.data["sum"], 5000);
    let start = chrono::DateTime::from_timestamp(minute * 60, 0).unwrap();
    let got: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(first.data["window_start"].clone()).unwrap();
    assert_eq!(got, start);

    // A shard's upsert is followed by the new total; other metrics still do not appear.
    partial(&pool, "payments", minute, "sim/approved", "0", 10).await;
    partial(&pool, "orders", minute, "EUR", "1", 7).await;
    let update = feed.next().await;
    assert!(is_metric(&update, "orders", "EUR"), "{update:?}");
    assert_eq!(update.data["count"], 9);

    // Anomalies come on the same feed.
    sqlx::query(
        "INSERT INTO streams.anomalies (anomaly_id, series, method, window_start, window_end,
            observed, expected_low, expected_high, score, explanation)
         VALUES ($1, 'orders_per_minute', 'ewma', now(), now() + interval '1 minute', 90, 10, 30, 7.5,
                 'orders/min 90 above the band 10..30')",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap();
    let anomaly = feed.until(|e| e.kind == "anomaly").await;
    assert_eq!(anomaly.data["series"], "orders_per_minute");
    assert_eq!(anomaly.data["observed"], 90.0);

    // A client that reconnects with the last id it saw gets what changed since.
    partial(&pool, "orders", minute, "EUR", "0", 4).await;
    let mut resumed = Feed::open(
        &app,
        "/v1/live/metrics?metrics=orders&anomalies=false",
        &analyst,
        Some(&update.id),
    )
    .await;
    let e = resumed
        .until(|e| is_metric(e, "orders", "EUR") && e.data["count"] == 11)
        .await;
    assert_eq!(e.data["sum"], 11_000);
}

#[sqlx::test(migrations = false)]
async fn the_feed_checks_roles_and_parameters(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, customer) = app.quick_user("customer").await;
    let (_, support) = app.quick_user("support").await;
    let r = app.call(Method::GET, "/v1/live/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(Method::GET, "/v1/live/metrics", None, Some(&customer))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(
            Method::GET,
            "/v1/live/metrics?metrics=orders,revenue",
            None,
            Some(&support),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert!(
        r.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"revenue\""),
        "{}",
        r.json
    );
    let r = app
        .call(
            Method::GET,
            "/v1/live/metrics?since_secs=999999",
            None,
            Some(&support),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    let r = app
        .raw(
            Request::get("/v1/live/metrics")
                .header(header::AUTHORIZATION, format!("Bearer {support}"))
                .header("last-event-id", "yesterday")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
}
