//! The fraud team's review queue: filters and cursor pages, evidence, decisions with an
//! audit trail and a `fraud.alert.resolved` event, the blocklist that checkout consults, and
//! role checks. Alerts are inserted as the fraud stream processor writes them.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::TestApp;

async fn alert(app: &TestApp, customer: Uuid, score: i32, rules: &[&str]) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO streams.fraud_alerts (alert_id, order_id, customer_id, card_fingerprint, score, action,
            rules_fired, features, model_version, amount_minor, currency, event_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7, '{\"amount_minor\": 120000}', 'lr-v0', 120000, 'EUR', now())",
    )
    .bind(id)
    .bind(Uuid::now_v7())
    .bind(customer)
    .bind(format!("fp-{customer}"))
    .bind(score)
    .bind(if score >= 75 { "block" } else { "review" })
    .bind(rules.iter().map(|r| r.to_string()).collect::<Vec<_>>())
    .execute(&app.pool)
    .await
    .unwrap();
    id
}

#[sqlx::test(migrations = false)]
async fn analysts_filter_inspect_and_decide_alerts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, analyst) = app.quick_user("fraud_analyst").await;
    let (buyer, buyer_token) = app.quick_user("customer").await;
    let other = Uuid::now_v7();
    let a1 = alert(&app, buyer, 91, &["card_testing", "velocity_customer"]).await;
    let a2 = alert(&app, buyer, 70, &["velocity_customer"]).await;
    let a3 = alert(&app, other, 80, &["card_testing"]).await;

    // Filters: score range, rule, status; pages of one follow the cursor.
    let r = app
        .call(
            Method::GET,
            "/v1/fraud/alerts?min_score=75",
            None,
            Some(&analyst),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let ids: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&a1.to_string().as_str()) && ids.contains(&a3.to_string().as_str()));
    let r = app
        .call(
            Method::GET,
            "/v1/fraud/alerts?rule=velocity_customer&max_score=80",
            None,
            Some(&analyst),
        )
        .await;
    assert_eq!(r.json["items"][0]["alert_id"], a2.to_string());
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1);
    let mut seen = Vec::new();
    let mut uri = "/v1/fraud/alerts?status=open&limit=1".to_owned();
    loop {
        let r = app.call(Method::GET, &uri, None, Some(&analyst)).await;
        seen.extend(
            r.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["alert_id"].clone()),
        );
        match r.json["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/fraud/alerts?status=open&limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);

    // Bad filters are 422 with the field named.
    let r = app
        .call(
            Method::GET,
            "/v1/fraud/alerts?status=maybe",
            None,
            Some(&analyst),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .call(
            Method::GET,
            "/v1/fraud/alerts?min_score=120",
            None,
            Some(&analyst),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Evidence: features, the customer's other alerts, similar alerts of other customers.
    let r = app
        .call(
            Method::GET,
            &format!("/v1/fraud/alerts/{a1}"),
            None,
            Some(&analyst),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["features"]["amount_minor"], 120000);
    assert_eq!(r.json["customer_alerts"][0]["alert_id"], a2.to_string());
    assert_eq!(r.json["similar"][0]["alert_id"], a3.to_string());
    assert_eq!(r.json["blocked"], false);
    let r = app
        .call(
            Method::GET,
            &format!("/v1/fraud/alerts/{}", Uuid::now_v7()),
            None,
            Some(&analyst),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Customers cannot see or decide anything here.
    let r = app
        .call(Method::GET, "/v1/fraud/alerts", None, Some(&buyer_token))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(
            Method::POST,
            &format!("/v1/fraud/alerts/{a1}/actions"),
            Some(json!({"action": "dismiss"})),
            Some(&buyer_token),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A decision: audit, resolution event in the outbox, blocklist; a second one conflicts.
    let outbox_before = app.count("SELECT count(*) FROM outbox.events").await;
    let r = app
        .call(
            Method::POST,
            &format!("/v1/fraud/alerts/{a1}/actions"),
            Some(json!({"action": "block", "note": "card testing pattern confirmed"})),
            Some(&analyst),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "blocked");
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events").await,
        outbox_before + 1
    );
    let event_type: String =
        sqlx::query_scalar("SELECT event_type FROM outbox.events ORDER BY seq DESC LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(event_type, "fraud.alert.resolved.v1");
    let r = app
        .call(
            Method::POST,
            &format!("/v1/fraud/alerts/{a1}/actions"),
            Some(json!({"action": "approve"})),
            Some(&analyst),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .call(
            Method::POST,
            &format!("/v1/fraud/alerts/{a2}/actions"),
            Some(json!({"action": "shrug"})),
            Some(&analyst),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .call(
            Method::GET,
            &format!("/v1/fraud/alerts/{a1}"),
            None,
            Some(&analyst),
        )
        .await;
    assert_eq!(r.json["audit"][0]["action"], "blocked");
    assert_eq!(r.json["audit"][0]["note"], "card testing pattern confirmed");
    assert_eq!(r.json["blocked"], true);

    // Checkout consults the blocklist: the blocked customer is refused, nothing written.
    let orders_before = app.count("SELECT count(*) FROM orders.orders").await;
    let r = app
        .checkout(&buyer_token, "k1", &json!({"card_number": "4242 4242 4242 4242", "billing_country": "DE", "shipping_country": "DE"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    assert!(r.json["detail"].as_str().unwrap().contains("blocked"));
    assert_eq!(
        app.count("SELECT count(*) FROM orders.orders").await,
        orders_before
    );

    // A blocked card is refused whoever pays with it; another card of that customer is not
    // (the checkout goes on, to find the cart empty).
    let (_, other_token) = app.quick_user("customer").await;
    let card = "4111 1111 1111 1111";
    let fingerprint = services::payments::card::CardNumber::parse(card)
        .unwrap()
        .fingerprint();
    sqlx::query("INSERT INTO streams.blocklist (kind, value, reason) VALUES ('card', $1, 'test')")
        .bind(&fingerprint)
        .execute(&app.pool)
        .await
        .unwrap();
    let r = app
        .checkout(
            &other_token,
            "k1",
            &json!({"card_number": card, "billing_country": "DE", "shipping_country": "DE"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    let r = app
        .checkout(&other_token, "k2", &json!({"card_number": "4242 4242 4242 4242", "billing_country": "DE", "shipping_country": "DE"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert!(r.json.to_string().contains("cart is empty"), "{}", r.json);
}
