//! Catalog extras: images (upload, type and size checks, serving), variants, facets.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;
use services::ServicesConfig;
use sqlx::PgPool;

use crate::support::TestApp;

fn png(extra: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend(std::iter::repeat_n(7u8, extra));
    b
}

fn upload(product: &str, token: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(format!("/v1/products/{product}/images"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

async fn new_product(
    app: &TestApp,
    token: &str,
    sku: &str,
    attrs: serde_json::Value,
    variant_of: Option<&str>,
) -> String {
    let r = app
        .call(
            Method::POST,
            "/v1/products",
            Some(json!({"sku": sku, "category": "shoes", "names": {"en": sku}, "attributes": attrs,
                "price": {"amount_minor": 5000, "currency": "EUR"}, "weight_grams": 800, "variant_of": variant_of})),
            Some(token),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    r.json["id"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrations = false)]
async fn images_are_checked_stored_and_served(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("shopstream-images-{}", uuid::Uuid::now_v7()));
    let cfg = ServicesConfig {
        data_dir: dir.clone(),
        ..ServicesConfig::default()
    };
    let app = TestApp::with_config(pool, cfg).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let (_, rival) = app.quick_user("vendor").await;
    let p = new_product(&app, &vendor, "BOOT-1", json!({}), None).await;

    let r = app
        .raw(upload(&p, &vendor, "image/png", png(2 << 20)))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "2 MiB is within the image limit: {}",
        r.json
    );
    let url = r.json.as_str().unwrap().to_owned();
    assert_eq!(
        app.raw(upload(
            &p,
            &vendor,
            "image/png",
            b"GIF89a-not-a-png".to_vec()
        ))
        .await
        .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        app.raw(upload(&p, &vendor, "image/jpeg", png(10)))
            .await
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "declared type must match"
    );
    assert_eq!(
        app.raw(upload(&p, &vendor, "image/png", png(6 << 20)))
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        app.raw(upload(&p, &rival, "image/png", png(10)))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let got = app
        .raw(Request::get(&url).body(Body::empty()).unwrap())
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers[header::CONTENT_TYPE], "image/png");
    let product = app
        .call(Method::GET, &format!("/v1/products/{p}"), None, None)
        .await
        .json;
    assert_eq!(product["images"], json!([url]));
    let files = std::fs::read_dir(dir.join("images").join(&p))
        .unwrap()
        .count();
    assert_eq!(files, 1, "only the accepted image is on disk");
    let _ = std::fs::remove_dir_all(dir);
}

#[sqlx::test(migrations = false)]
async fn variants_group_products_and_facets_count_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let (_, rival) = app.quick_user("vendor").await;
    let base = new_product(
        &app,
        &vendor,
        "RUNNER-40",
        json!({"size": "40", "colour": "red"}),
        None,
    )
    .await;
    let v41 = new_product(
        &app,
        &vendor,
        "RUNNER-41",
        json!({"size": "41", "colour": "red"}),
        Some(&base),
    )
    .await;
    let v42 = new_product(
        &app,
        &vendor,
        "RUNNER-42",
        json!({"size": "42", "colour": "blue"}),
        Some(&base),
    )
    .await;

    let shown = app
        .call(Method::GET, &format!("/v1/products/{v41}"), None, None)
        .await
        .json;
    assert_eq!(shown["variant_of"], base.as_str());
    let mut group: Vec<String> = shown["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    group.sort();
    let mut want = vec![base.clone(), v42.clone()];
    want.sort();
    assert_eq!(group, want);

    let nested = json!({"sku": "RUNNER-43", "category": "shoes", "names": {"en": "x"},
        "price": {"amount_minor": 1, "currency": "EUR"}, "weight_grams": 1, "variant_of": v41});
    let r = app
        .call(Method::POST, "/v1/products", Some(nested), Some(&vendor))
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "one level of variants"
    );
    let foreign = json!({"sku": "FAKE-40", "category": "shoes", "names": {"en": "x"},
        "price": {"amount_minor": 1, "currency": "EUR"}, "weight_grams": 1, "variant_of": base});
    assert_eq!(
        app.call(Method::POST, "/v1/products", Some(foreign), Some(&rival))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let f = app
        .call(
            Method::GET,
            "/v1/products/facets?category=shoes",
            None,
            None,
        )
        .await
        .json;
    assert_eq!(f["categories"], json!([{"value": "shoes", "count": 3}]));
    let colours: Vec<(String, i64)> = f["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "colour")
        .map(|a| {
            (
                a["value"].as_str().unwrap().to_owned(),
                a["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(colours, [("red".to_owned(), 2), ("blue".to_owned(), 1)]);
}
