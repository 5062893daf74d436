//! users (profiles, addresses: each customer only their own) and reviews.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{TestApp, error_fields};

#[sqlx::test(migrations = false)]
async fn profiles_and_addresses_belong_to_their_owner(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (alice_id, alice) = app.quick_user("customer").await;
    let (_, bob) = app.quick_user("customer").await;
    let (_, support) = app.quick_user("support").await;

    let r = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(json!({"locale": "de", "preferences": {"newsletter": true}})),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["locale"], "de");
    let r = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(json!({"preferences": {"theme": "dark"}})),
            Some(&alice),
        )
        .await;
    assert_eq!(
        r.json["preferences"],
        json!({"newsletter": true, "theme": "dark"}),
        "preferences merge"
    );
    let r = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(json!({"phone": "call me"})),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let addr = json!({"name": "Alice", "line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE", "is_default": true});
    let r = app
        .call(
            Method::POST,
            "/v1/users/me/addresses",
            Some(addr),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let address_id = r.json[0]["id"].as_str().unwrap().to_owned();
    let bad = json!({"name": "", "line1": "x", "city": "y", "postal_code": "1", "country": "Deutschland"});
    let r = app
        .call(
            Method::POST,
            "/v1/users/me/addresses",
            Some(bad),
            Some(&alice),
        )
        .await;
    assert_eq!(error_fields(&r.json), ["name", "country"]);

    // Bob sees none of it and cannot delete it.
    assert_eq!(
        app.call(Method::GET, "/v1/users/me/addresses", None, Some(&bob))
            .await
            .json,
        json!([])
    );
    let uri = format!("/v1/users/me/addresses/{address_id}");
    assert_eq!(
        app.call(Method::DELETE, &uri, None, Some(&bob))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(
            Method::GET,
            &format!("/v1/users/{alice_id}"),
            None,
            Some(&bob)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .call(
            Method::GET,
            &format!("/v1/users/{alice_id}"),
            None,
            Some(&support),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["locale"], "de");
    assert_eq!(
        app.call(Method::DELETE, &uri, None, Some(&alice))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[sqlx::test(migrations = false)]
async fn reviews_are_one_per_customer_and_marked_verified_after_a_purchase(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let p = app
        .call(
            Method::POST,
            "/v1/products",
            Some(
                json!({"sku": "REVIEWED-1", "category": "c", "names": {"en": "n"},
                "price": {"amount_minor": 500, "currency": "EUR"}, "weight_grams": 10}),
            ),
            Some(&vendor),
        )
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, carol) = app.quick_user("customer").await;
    let review = json!({"product_id": p, "rating": 4, "title": "Nice", "body": "Does the job."});
    let r = app
        .call(
            Method::POST,
            "/v1/reviews",
            Some(review.clone()),
            Some(&carol),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["verified_purchase"], false);
    assert_eq!(
        app.call(Method::POST, "/v1/reviews", Some(review), Some(&carol))
            .await
            .status,
        StatusCode::CONFLICT
    );
    for (rating, title) in [(0, "t"), (6, "t"), (3, "")] {
        let bad = json!({"product_id": p, "rating": rating, "title": title, "body": ""});
        let r = app
            .call(Method::POST, "/v1/reviews", Some(bad), Some(&carol))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{rating} {title:?}"
        );
    }
    let ghost = json!({"product_id": Uuid::now_v7(), "rating": 5, "title": "t", "body": ""});
    assert_eq!(
        app.call(Method::POST, "/v1/reviews", Some(ghost), Some(&carol))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::POST, "/v1/reviews", Some(json!({})), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Dave buys it first: his review is verified.
    app.call(
        Method::POST,
        "/v1/inventory/REVIEWED-1/adjust",
        Some(json!({"delta": 5, "reason": "r"})),
        Some(&vendor),
    )
    .await;
    let (_, dave) = app.quick_user("customer").await;
    app.call(
        Method::POST,
        "/v1/cart/items",
        Some(json!({"product_id": p, "quantity": 1})),
        Some(&dave),
    )
    .await;
    let bought = app.checkout(&dave, "buy", &json!({"card_number": "4242424242424242", "billing_country": "DE", "shipping_country": "DE"})).await;
    assert_eq!(bought.json["status"], "confirmed");
    let review = json!({"product_id": p, "rating": 5, "title": "Bought it", "body": ""});
    let r = app
        .call(Method::POST, "/v1/reviews", Some(review), Some(&dave))
        .await;
    assert_eq!(r.json["verified_purchase"], true);

    let page = app
        .call(
            Method::GET,
            &format!("/v1/reviews?product_id={p}&limit=1"),
            None,
            None,
        )
        .await
        .json;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_string());
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events WHERE event_type = 'review.posted.v1'")
            .await,
        2
    );
}
