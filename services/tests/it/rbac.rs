//! The role x endpoint matrix across every service: each role is allowed exactly where it
//! should be, refused (403) elsewhere, and an anonymous caller gets 401 everywhere here.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::TestApp;

const ROLES: [&str; 6] = [
    "customer",
    "vendor",
    "support",
    "analyst",
    "fraud_analyst",
    "admin",
];

#[sqlx::test(migrations = false)]
async fn role_by_endpoint_matrix(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (target, _) = app.quick_user("customer").await;
    let now = chrono::Utc::now();
    let window = (
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );
    // (method, uri, body, roles allowed)
    let cases: Vec<(Method, String, Option<Value>, &[&str])> = vec![
        (Method::GET, "/v1/auth/me".into(), None, &ROLES),
        (Method::GET, "/v1/cart".into(), None, &ROLES),
        (Method::GET, "/v1/orders".into(), None, &ROLES),
        (Method::GET, "/v1/users/me".into(), None, &ROLES),
        (
            Method::PUT,
            format!("/v1/auth/users/{target}/roles"),
            Some(json!({"roles": ["customer"]})),
            &["admin"],
        ),
        (
            Method::GET,
            format!("/v1/users/{target}"),
            None,
            &["support", "admin"],
        ),
        (
            Method::POST,
            "/v1/inventory/RBAC-SKU/adjust".into(),
            Some(json!({"delta": 1, "reason": "count"})),
            &["vendor", "admin"],
        ),
        (
            Method::GET,
            "/v1/pricing/promotions".into(),
            None,
            &["admin"],
        ),
        (
            Method::POST,
            "/v1/pricing/promotions".into(),
            Some(
                json!({"name": "p", "kind": "percent", "value": 5, "starts_at": window.0, "ends_at": window.1}),
            ),
            &["admin"],
        ),
        (
            Method::POST,
            format!("/v1/payments/orders/{}/refund", Uuid::now_v7()),
            Some(json!({"reason": "r"})),
            &["support", "admin"],
        ),
        (
            Method::POST,
            "/v1/payments/simulator/outage".into(),
            Some(json!({"seconds": 0})),
            &["admin"],
        ),
        (
            Method::POST,
            format!("/v1/shipping/shipments/{}/advance", Uuid::now_v7()),
            None,
            &["support", "admin"],
        ),
    ];
    for role in ROLES {
        let (_, token) = app.quick_user(role).await;
        let product = json!({"sku": format!("RBAC-{}", role.to_uppercase().replace('_', "-")), "category": "c",
            "names": {"en": "n"}, "price": {"amount_minor": 100, "currency": "EUR"}, "weight_grams": 1});
        let with_product = cases.iter().cloned().chain([(
            Method::POST,
            "/v1/products".to_owned(),
            Some(product),
            &["vendor", "admin"][..],
        )]);
        for (method, uri, body, allowed) in with_product {
            let r = app
                .call(method.clone(), &uri, body.clone(), Some(&token))
                .await;
            if allowed.contains(&role) {
                assert!(
                    r.status != StatusCode::FORBIDDEN
                        && r.status != StatusCode::UNAUTHORIZED
                        && !r.status.is_server_error(),
                    "{role} must be allowed {method} {uri}, got {}: {}",
                    r.status,
                    r.json
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role} must be refused {method} {uri}: {}",
                    r.json
                );
            }
            let anonymous = app.call(method.clone(), &uri, body, None).await;
            assert_eq!(
                anonymous.status,
                StatusCode::UNAUTHORIZED,
                "anonymous {method} {uri}"
            );
        }
    }
}
