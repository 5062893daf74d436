//! Visual search: `POST /v1/search/image` over the catalogue's uploaded pictures (the
//! simulator's product images, embedded by the real EfficientNet-Lite0), bad uploads, and an
//! index that follows new images and discontinued products.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ingest::simulate::{Generator, SimConfig, images};
use serde_json::json;
use services::ServicesConfig;
use sqlx::PgPool;

use crate::support::{TestApp, error_fields};

const BOUNDARY: &str = "shopstream-test-boundary";

fn form(field: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"q\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(bytes);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn query(uri: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap()
}

fn image_model_dir() -> std::path::PathBuf {
    std::env::var_os("SHOPSTREAM_IMAGE_MODEL_DIR")
        .map(Into::into)
        .unwrap_or_else(|| ServicesConfig::default().image_model_dir)
}

/// CRC-32 (IEEE) as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[sqlx::test(migrations = false)]
async fn image_search_finds_products_by_picture_and_refuses_bad_uploads(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("shopstream-imgsearch-{}", uuid::Uuid::now_v7()));
    let cfg = ServicesConfig {
        data_dir: dir.clone(),
        image_model_dir: image_model_dir(),
        ..ServicesConfig::default()
    };
    let app = TestApp::with_config(pool.clone(), cfg).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let g = Generator::new(SimConfig {
        seed: 4,
        products: 24,
        ..SimConfig::default()
    });
    let products = &g.world().products;
    let mut ids = Vec::new();
    for (n, p) in products.iter().take(20).enumerate() {
        let r = app
            .call(
                Method::POST,
                "/v1/products",
                Some(json!({"sku": format!("IMG-{n}-{}", uuid::Uuid::now_v7().simple().to_string().to_uppercase()), "category": p.category,
                    "names": {"en": format!("{} {} {}", p.colour, p.pattern, p.category)},
                    "price": {"amount_minor": 1000, "currency": "EUR"}, "weight_grams": 100})),
                Some(&vendor),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let id = r.json["id"].as_str().unwrap().to_owned();
        let up = Request::post(format!("/v1/products/{id}/images"))
            .header(header::AUTHORIZATION, format!("Bearer {vendor}"))
            .header(header::CONTENT_TYPE, "image/png")
            .body(Body::from(images::png(p, 4).unwrap()))
            .unwrap();
        assert_eq!(app.raw(up).await.status, StatusCode::CREATED);
        ids.push(id);
    }
    let picture = |i: usize| images::png(&products[i], 4).unwrap();

    let r = app
        .raw(query(
            "/v1/search/image",
            form("image", "image/png", &picture(2)),
        ))
        .await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "before the first build: {}",
        r.json
    );
    app.state.models.images.refresh(&pool).await.unwrap();
    assert!(app.state.models.images.load_error().is_none());

    // A product's own picture finds it first; results are products with their image URL.
    let r = app
        .raw(query(
            "/v1/search/image",
            form("image", "image/png", &picture(2)),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["indexed_images"], 20);
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 10, "default limit");
    assert_eq!(items[0]["product_id"], ids[2].as_str());
    assert!(items[0]["similarity"].as_f64().unwrap() > 0.999);
    let url = items[0]["image_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("/v1/products/{}/images/", ids[2])),
        "{url}"
    );
    assert_eq!(
        app.call(Method::GET, url, None, None).await.status,
        StatusCode::OK
    );
    let products_found: std::collections::HashSet<_> = items
        .iter()
        .map(|i| i["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(products_found.len(), items.len(), "each product once");

    // Category filter and limit.
    let cat = products[2].category;
    let r = app
        .raw(query(
            &format!("/v1/search/image?category={cat}&limit=3"),
            form("image", "image/png", &picture(5)),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let items = r.json["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() <= 3);
    assert!(items.iter().all(|i| i["category"] == cat), "{}", r.json);

    // Bad input: clear 4xx problems.
    let r = app
        .raw(query(
            "/v1/search/image?limit=0",
            form("image", "image/png", &picture(2)),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&r.json), ["limit"]);
    let r = app
        .raw(query(
            "/v1/search/image",
            form("photo", "image/png", &picture(2)),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(error_fields(&r.json), ["image"]);
    let r = app
        .raw(query(
            "/v1/search/image",
            form("image", "image/gif", b"GIF89a...."),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(error_fields(&r.json), ["image"]);
    let mut half = picture(2);
    half.truncate(half.len() / 2);
    let r = app
        .raw(query("/v1/search/image", form("image", "image/png", &half)))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    let r = app
        .call(
            Method::POST,
            "/v1/search/image",
            Some(json!({"image": "x"})),
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "not multipart: {}",
        r.json
    );
    let big = vec![0u8; (5 << 20) + 1];
    let r = app
        .raw(query("/v1/search/image", form("image", "image/png", &big)))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    // A small file claiming 20000×20000 pixels is refused before it is decoded.
    let mut bomb = picture(2);
    bomb[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let r = app
        .raw(query("/v1/search/image", form("image", "image/png", &bomb)))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);

    // The index follows the catalogue: a new product's picture is found, a discontinued
    // product is gone.
    let p = &products[21];
    let r = app
        .call(
            Method::POST,
            "/v1/products",
            Some(json!({"sku": format!("IMG-NEW-{}", uuid::Uuid::now_v7().simple().to_string().to_uppercase()), "category": p.category,
                "names": {"en": "new"}, "price": {"amount_minor": 1000, "currency": "EUR"}, "weight_grams": 100})),
            Some(&vendor),
        )
        .await;
    let new_id = r.json["id"].as_str().unwrap().to_owned();
    let up = Request::post(format!("/v1/products/{new_id}/images"))
        .header(header::AUTHORIZATION, format!("Bearer {vendor}"))
        .header(header::CONTENT_TYPE, "image/png")
        .body(Body::from(images::png(p, 4).unwrap()))
        .unwrap();
    assert_eq!(app.raw(up).await.status, StatusCode::CREATED);
    sqlx::query(
        "UPDATE catalog.products SET status = 'discontinued', updated_at = now() WHERE id = $1::uuid",
    )
    .bind(&ids[2])
    .execute(&pool)
    .await
    .unwrap();
    app.state.models.images.refresh(&pool).await.unwrap();
    let r = app
        .raw(query(
            "/v1/search/image?limit=50",
            form("image", "image/png", &images::png(p, 4).unwrap()),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["indexed_images"], 20);
    assert_eq!(r.json["items"][0]["product_id"], new_id.as_str());
    assert!(
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["product_id"] != ids[2].as_str()),
        "discontinued product still found"
    );
    let _ = std::fs::remove_dir_all(dir);
}
