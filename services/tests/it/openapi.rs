//! The OpenAPI document: generated from the handlers, served with Swagger UI, committed
//! with a drift test, and every path in it is a real route.

use std::path::Path;

use axum::http::{Method, StatusCode};
use sqlx::PgPool;

use crate::support::TestApp;

#[test]
fn the_committed_spec_matches_the_code() {
    let generated = services::openapi().to_pretty_json().unwrap() + "\n";
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == generated,
        "services/openapi.json drifted from the code; regenerate with \
         `cargo run -p shopstream -- openapi --write services/openapi.json` and review the diff"
    );
}

#[sqlx::test(migrations = false)]
async fn the_spec_and_swagger_ui_are_served_and_every_documented_path_is_routed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let spec = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(spec.status, StatusCode::OK);
    let ui = app.call(Method::GET, "/swagger-ui/", None, None).await;
    assert_eq!(ui.status, StatusCode::OK);

    let paths = spec.json["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{} paths", paths.len());
    for (path, methods) in paths {
        let concrete = path
            .replace("{sku}", "SKU-1")
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    uuid::Uuid::now_v7().to_string()
                } else {
                    seg.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.call(m.clone(), &concrete, None, None).await;
            assert_ne!(
                r.json["detail"], "no such route",
                "{m} {path} is documented but not routed"
            );
        }
    }
}
