//! Recommendation routes over a model trained here, on products and stock in PostgreSQL:
//! filters, fallbacks, access, bad input, and a promotion swapped in without a restart.

use axum::http::{Method, StatusCode};
use ml::recs::als::AlsParams;
use ml::recs::data::{CART_WEIGHT, Interaction, PURCHASE_WEIGHT, VIEW_WEIGHT};
use ml::recs::pipeline::{KIND, TrainOptions, train};
use serde_json::Value;
use services::ServicesConfig;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::TestApp;

const CATEGORIES: [&str; 3] = ["shoes", "books", "garden"];

/// 30 products (10 per category); even-numbered ones have stock, odd ones have none.
async fn products(pool: &PgPool) -> Vec<(Uuid, &'static str)> {
    let mut out = Vec::new();
    for n in 0..30usize {
        let (id, cat) = (Uuid::now_v7(), CATEGORIES[n / 10]);
        let sku = format!("REC-{n:03}-{}", &id.simple().to_string()[..8]);
        sqlx::query(
            "INSERT INTO catalog.products (id, sku, vendor_id, category, names, price_minor, currency, weight_grams)
             VALUES ($1, $2, $3, $4, '{\"en\": \"x\"}', 1000, 'EUR', 100)",
        )
        .bind(id)
        .bind(&sku)
        .bind(Uuid::now_v7())
        .bind(cat)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO inventory.stock (sku, on_hand) VALUES ($1, $2)")
            .bind(&sku)
            .bind(if n % 2 == 0 { 5i64 } else { 0 })
            .execute(pool)
            .await
            .unwrap();
        out.push((id, cat));
    }
    out
}

/// 200 shoppers who each stay in one category, plus `alice`, who views and buys shoes.
fn interactions(products: &[(Uuid, &str)], alice: Uuid) -> Vec<Interaction> {
    let mut rows = Vec::new();
    let mut t = 1_760_000_000_000i64;
    let mut push = |user: String, item: Uuid, weight: f32| {
        t += 1000;
        rows.push(Interaction {
            user,
            item: item.to_string(),
            weight,
            ts_ms: t,
            purchase: weight == PURCHASE_WEIGHT,
        });
    };
    for u in 0..200usize {
        let c = u % 3;
        for k in 0..6usize {
            let (item, _) = products[c * 10 + (u * 7 + k * 3) % 10];
            let w = [VIEW_WEIGHT, CART_WEIGHT, PURCHASE_WEIGHT][k % 3];
            push(format!("shopper-{u}"), item, w);
        }
    }
    for (item, _) in &products[..5] {
        push(alice.to_string(), *item, VIEW_WEIGHT);
    }
    push(alice.to_string(), products[0].0, PURCHASE_WEIGHT);
    push(alice.to_string(), products[2].0, PURCHASE_WEIGHT);
    rows
}

fn opts() -> TrainOptions {
    TrainOptions {
        params: AlsParams {
            factors: 8,
            epochs: 6,
            ..AlsParams::default()
        },
        source: "test".into(),
        ..TrainOptions::default()
    }
}

fn ids(r: &Value) -> Vec<String> {
    r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap().to_string())
        .collect()
}

#[sqlx::test(migrations = false)]
async fn recommendations_filter_fall_back_and_swap_versions(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("recs-it-{}", Uuid::now_v7()));
    let cfg = ServicesConfig {
        models_dir: dir.clone(),
        ..ServicesConfig::default()
    };
    let app = TestApp::with_config(pool.clone(), cfg).await;
    let (alice, alice_token) = app.quick_user("customer").await;
    let (bob, bob_token) = app.quick_user("customer").await;
    let (_, admin) = app.quick_user("admin").await;
    let catalog = products(&pool).await;
    let url = |u: Uuid, q: &str| format!("/v1/recommendations/users/{u}{q}");

    // No model yet: a clear 503.
    let r = app
        .call(Method::GET, &url(alice, ""), None, Some(&alice_token))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    assert!(r.json["detail"].as_str().unwrap().contains("ml train recs"));

    let rows = interactions(&catalog, alice);
    let v1 = train(&rows, &opts(), &app.state.models.registry).unwrap();
    app.state
        .models
        .registry
        .promote(KIND, &v1.version)
        .unwrap();
    app.state.models.refresh(&pool).await.unwrap();

    // Alice: personalised, shoes first, her purchases left out.
    let r = app
        .call(
            Method::GET,
            &url(alice, "?limit=5"),
            None,
            Some(&alice_token),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["strategy"], "personalized");
    assert_eq!(r.json["model_version"], "v1");
    let got = ids(&r.json);
    assert_eq!(got.len(), 5);
    let bought = [catalog[0].0.to_string(), catalog[2].0.to_string()];
    assert!(got.iter().all(|g| !bought.contains(g)), "{got:?}");
    assert_eq!(r.json["items"][0]["category"], "shoes", "{}", r.json);
    // Asking to keep purchases brings them back into reach.
    let r = app
        .call(
            Method::GET,
            &url(alice, "?limit=30&exclude_bought=false"),
            None,
            Some(&alice_token),
        )
        .await;
    assert!(
        ids(&r.json).iter().any(|g| bought.contains(g)),
        "{}",
        r.json
    );

    // Category and stock filters.
    let r = app
        .call(
            Method::GET,
            &url(alice, "?limit=20&category=garden"),
            None,
            Some(&alice_token),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ids(&r.json).len(), 10);
    assert!(
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["category"] == "garden")
    );
    let r = app
        .call(
            Method::GET,
            &url(alice, "?limit=30&in_stock=true"),
            None,
            Some(&alice_token),
        )
        .await;
    let in_stock: Vec<String> = catalog
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 2 == 0)
        .map(|(_, (id, _))| id.to_string())
        .collect();
    let got = ids(&r.json);
    assert_eq!(
        got.len(),
        15 - 2,
        "in stock, minus the two she bought: {got:?}"
    );
    assert!(got.iter().all(|g| in_stock.contains(g)));

    // Bob is new to the model: popular items. Alice may not read Bob's list; an admin may.
    let r = app
        .call(Method::GET, &url(bob, ""), None, Some(&bob_token))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["strategy"], "popular");
    assert_eq!(ids(&r.json).len(), 10);
    let r = app
        .call(Method::GET, &url(bob, ""), None, Some(&alice_token))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(Method::GET, &url(alice, ""), None, Some(&admin))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.call(Method::GET, &url(alice, ""), None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Bad input: a clear 422 naming the field.
    for (q, field) in [
        ("?limit=0", "limit"),
        ("?limit=many", "limit"),
        ("?in_stock=maybe", "in_stock"),
        ("?colour=red", ""),
    ] {
        let r = app
            .call(Method::GET, &url(alice, q), None, Some(&alice_token))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q}: {}",
            r.json
        );
        if !field.is_empty() {
            assert!(r.json.to_string().contains(field), "{q}: {}", r.json);
        }
    }

    // Similar products: same category mostly, never the product itself; unknown → 404.
    let shoe = catalog[4].0;
    let r = app
        .call(
            Method::GET,
            &format!("/v1/products/{shoe}/similar?limit=5"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["strategy"], "similar");
    let got = ids(&r.json);
    assert_eq!(got.len(), 5);
    assert!(!got.contains(&shoe.to_string()));
    let shoes = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["category"] == "shoes")
        .count();
    assert!(shoes >= 4, "{}", r.json);
    let r = app
        .call(
            Method::GET,
            &format!("/v1/products/{}/similar", Uuid::now_v7()),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::GET,
            &format!("/v1/products/{shoe}/similar?exclude_bought=true"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // A new version is served after promotion; rollback brings the old one back.
    let v2 = train(&rows, &opts(), &app.state.models.registry).unwrap();
    assert_eq!(v2.version, "v2");
    app.state.models.registry.promote(KIND, "v2").unwrap();
    app.state.models.refresh(&pool).await.unwrap();
    let r = app
        .call(Method::GET, &url(alice, ""), None, Some(&alice_token))
        .await;
    assert_eq!(r.json["model_version"], "v2");
    app.state.models.registry.rollback(KIND).unwrap();
    app.state.models.refresh(&pool).await.unwrap();
    let r = app
        .call(Method::GET, &url(alice, ""), None, Some(&alice_token))
        .await;
    assert_eq!(r.json["model_version"], "v1");
    std::fs::remove_dir_all(&dir).unwrap();
}
