//! `POST /v1/events` against the real broker: good records are published even when others
//! in the batch are refused, each refusal says which record and why, sessions are made for
//! anonymous visitors, and the user comes from the token, never from the client.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use events::{Event, Topic};
use ingest::{ConsumerOptions, DurableConsumer, KafkaConfig, Record, Sink, SinkError, TopicAdmin};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::{TestApp, error_fields};

fn post(body: Value, token: Option<&str>, session: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/v1/events").header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(s) = session {
        b = b.header("x-session-id", s);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[derive(Default)]
struct Collect(Vec<Record>);

impl Sink for Collect {
    async fn write(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.0.extend_from_slice(batch);
        Ok(())
    }
}

#[sqlx::test(migrations = false)]
async fn intake_publishes_the_good_records_and_names_the_bad(pool: PgPool) {
    let kafka = KafkaConfig {
        brokers: std::env::var("SHOPSTREAM_KAFKA_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: format!("it-{}.", uuid::Uuid::now_v7().simple()),
        ..KafkaConfig::default()
    };
    let names = kafka.topic_names();
    let plan: Vec<_> = names
        .plan()
        .into_iter()
        .filter(|p| p.name.ends_with("clickstream"))
        .collect();
    TopicAdmin::new(&kafka)
        .unwrap()
        .apply(&plan)
        .await
        .expect("the local Kafka broker is up");
    let app = TestApp::with_events(pool, &kafka).await;
    let product = uuid::Uuid::now_v7();
    let view = json!({"type": "product.viewed.v1", "data": {"product_id": product, "device_id": "web-1", "referrer": null}});

    // Anonymous, mixed batch.
    let batch = json!({"events": [
        view,
        {"type": "product.viewed.v1", "data": {"product_id": "nope", "device_id": "web-1", "referrer": null}},
        {"type": "search.performed.v1", "data": {"query": "red shoes", "category": null, "results_count": 12}},
        {"type": "payment.authorized.v1", "data": {}},
    ]});
    let r = app.raw(post(batch, None, None)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .starts_with("2 of 4 records accepted"),
        "{}",
        r.json
    );
    assert_eq!(error_fields(&r.json), ["events[1].data", "events[3].type"]);

    // A returning anonymous visitor keeps their session; a signed-in user is taken from the token.
    let session = uuid::Uuid::now_v7().to_string();
    let r = app
        .raw(post(json!({"events": [view]}), None, Some(&session)))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json["session_id"], session.as_str());
    let (user, token) = app.quick_user("customer").await;
    let r = app
        .raw(post(
            json!({"events": [view]}),
            Some(&token),
            Some(&session),
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let spoof = json!({"events": [{"type": "product.viewed.v1", "data": {"product_id": product, "device_id": "x", "referrer": null, "user_id": user}}]});
    assert_eq!(
        app.raw(post(spoof, None, None)).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.raw(post(json!({"events": []}), None, None))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.raw(post(json!({"events": [view]}), Some("forged"), None))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Exactly the four good records reached the topic, keyed by session or user.
    let consumer = DurableConsumer::new(
        &kafka,
        ConsumerOptions::new(
            format!("{}check", names.prefix()),
            vec![names.name(Topic::Clickstream)],
        ),
    )
    .unwrap();
    let mut sink = Collect::default();
    for _ in 0..60 {
        if sink.0.len() >= 4 {
            break;
        }
        consumer
            .poll_batch(&mut sink, Duration::from_millis(500))
            .await
            .unwrap();
    }
    assert_eq!(sink.0.len(), 4);
    let signed = sink
        .0
        .iter()
        .filter(|r| matches!(&r.envelope.event, Event::ProductViewed(v) if v.user_id == Some(user)))
        .count();
    assert_eq!(signed, 1);
    assert_eq!(
        sink.0
            .iter()
            .filter(|r| r.envelope.key() == session)
            .count(),
        1,
        "anonymous records keyed by session"
    );
    let refs: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
    TopicAdmin::new(&kafka)
        .unwrap()
        .delete(&refs)
        .await
        .unwrap();
}

#[sqlx::test(migrations = false)]
async fn intake_without_kafka_says_so(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let r = app
        .raw(post(
            json!({"events": [{"type": "product.viewed.v1", "data": {}}]}),
            None,
            None,
        ))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}
