//! Product search over the catalogue in PostgreSQL: blended full-text and semantic results,
//! facets, autocomplete, bad input, and an index that follows catalogue changes.

use axum::http::{Method, StatusCode};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::TestApp;

async fn product(pool: &PgPool, title: &str, description: &str, category: &str) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO catalog.products (id, sku, vendor_id, category, names, descriptions, price_minor, currency, weight_grams)
         VALUES ($1, $2, $3, $4, jsonb_build_object('en', $5::text), jsonb_build_object('en', $6::text), 1000, 'EUR', 100)",
    )
    .bind(id)
    // The whole id: a UUIDv7's first 12 hex digits are its millisecond, shared by products
    // made in the same millisecond.
    .bind(format!("S-{}", id.simple()))
    .bind(Uuid::now_v7())
    .bind(category)
    .bind(title)
    .bind(description)
    .execute(pool)
    .await
    .unwrap();
    id
}

#[sqlx::test(migrations = false)]
async fn search_blends_meaning_and_words_and_follows_the_catalogue(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let r = app
        .call(Method::GET, "/v1/search?q=shoes", None, None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "before the first build"
    );

    let earbuds = product(
        &pool,
        "Wireless earbuds",
        "Bluetooth in-ear audio with a charging case",
        "electronics",
    )
    .await;
    product(
        &pool,
        "Garden hose",
        "Thirty metres of flexible green hose",
        "garden",
    )
    .await;
    let shoes = product(
        &pool,
        "Running shoes",
        "Lightweight trainers for road running",
        "shoes",
    )
    .await;
    product(
        &pool,
        "Garden gloves",
        "Thorn-proof gloves for pruning roses",
        "garden",
    )
    .await;
    app.state.models.search.refresh(&pool).await.unwrap();

    let r = app
        .call(Method::GET, "/v1/search?q=headphones", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["mode"], "blended", "{}", r.json);
    assert_eq!(
        r.json["items"][0]["product_id"],
        earbuds.to_string(),
        "{}",
        r.json
    );
    assert_eq!(r.json["items"][0]["matched"], "semantic");
    let r = app
        .call(Method::GET, "/v1/search?q=garden&limit=5", None, None)
        .await;
    assert_eq!(r.json["facets"]["garden"], 2, "{}", r.json);
    assert_eq!(r.json["items"][0]["category"], "garden");
    let r = app
        .call(
            Method::GET,
            "/v1/search?q=garden&category=shoes",
            None,
            None,
        )
        .await;
    assert!(
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["category"] == "shoes"),
        "{}",
        r.json
    );

    let r = app
        .call(Method::GET, "/v1/search/suggest?q=gard", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["suggestions"][0], "garden", "{}", r.json);

    for uri in [
        "/v1/search?q=",
        "/v1/search?q=x&limit=0",
        "/v1/search",
        "/v1/search?q=x&sort=price",
        "/v1/search/suggest?q=%20",
    ] {
        let r = app.call(Method::GET, uri, None, None).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{uri}: {}",
            r.json
        );
    }

    // A new product is searchable after the next refresh; an inactive one is not.
    let kettle = product(
        &pool,
        "Electric kettle",
        "Boils water in two minutes",
        "home",
    )
    .await;
    sqlx::query(
        "UPDATE catalog.products SET status = 'discontinued', updated_at = now() WHERE id = $1",
    )
    .bind(shoes)
    .execute(&pool)
    .await
    .unwrap();
    app.state.models.search.refresh(&pool).await.unwrap();
    let r = app
        .call(Method::GET, "/v1/search?q=kettle", None, None)
        .await;
    assert_eq!(
        r.json["items"][0]["product_id"],
        kettle.to_string(),
        "{}",
        r.json
    );
    let r = app
        .call(Method::GET, "/v1/search?q=running%20shoes", None, None)
        .await;
    assert!(
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["product_id"] != shoes.to_string()),
        "{}",
        r.json
    );
}
