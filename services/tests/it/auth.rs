//! auth: registration, login limits, token expiry, rotation, reuse and logout, RBAC.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;
use services::ServicesConfig;
use sqlx::PgPool;

use crate::support::{TestApp, error_fields};

#[sqlx::test(migrations = false)]
async fn register_then_login_writes_both_events_to_the_outbox(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (id, access, _) = app.signup("Ada@Example.com").await;
    let me = app
        .call(Method::GET, "/v1/auth/me", None, Some(&access))
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["email"], "ada@example.com");
    assert_eq!(me.json["user_id"], id.as_str());
    assert_eq!(me.json["roles"], json!(["customer"]));
    let types: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outbox.events ORDER BY seq")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(types, ["user.registered.v1", "user.logged_in.v1"]);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM auth.users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[sqlx::test(migrations = false)]
async fn bad_registrations_are_4xx_problems_and_write_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.signup("taken@example.com").await;
    let before = app.count("SELECT count(*) FROM outbox.events").await;

    let r = app
        .post(
            "/v1/auth/register",
            json!({"email": "nope", "password": "short", "display_name": "", "country": "Germany"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error_fields(&r.json),
        ["email", "password", "display_name", "country"]
    );

    let r = app
        .post("/v1/auth/register", json!({"email": "a@example.com", "password": "long enough pw", "display_name": "A", "country": "DE", "role": "admin"}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );
    assert!(
        r.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("role"),
        "{}",
        r.json
    );

    let r = app
        .post("/v1/auth/register", json!({"email": "a@example.com", "password": 12345678901i64, "display_name": "A", "country": "DE"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["errors"][0]["field"], "password");

    let r = app
        .post("/v1/auth/register", json!({"email": "TAKEN@example.com", "password": "long enough pw", "display_name": "A", "country": "DE"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let malformed = Request::post("/v1/auth/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"email\": "))
        .unwrap();
    assert_eq!(app.raw(malformed).await.status, StatusCode::BAD_REQUEST);
    let not_json = Request::post("/v1/auth/register")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    assert_eq!(
        app.raw(not_json).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let huge = Request::post("/v1/auth/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![b' '; 2 << 20]))
        .unwrap();
    assert_eq!(app.raw(huge).await.status, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(app.count("SELECT count(*) FROM auth.users").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events").await,
        before
    );
}

#[sqlx::test(migrations = false)]
async fn failed_logins_are_limited_per_account_with_retry_after(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.signup("bob@example.com").await;
    for _ in 0..5 {
        let r = app
            .post(
                "/v1/auth/login",
                json!({"email": "bob@example.com", "password": "wrong password"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password waits now.
    let r = app
        .post(
            "/v1/auth/login",
            json!({"email": "bob@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    let unknown = app
        .post(
            "/v1/auth/login",
            json!({"email": "nobody@example.com", "password": "whatever it is"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = false)]
async fn refresh_rotates_and_reuse_revokes_the_session(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, _, refresh1) = app.signup("carol@example.com").await;
    let r = app
        .post("/v1/auth/refresh", json!({"refresh_token": refresh1}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let access2 = r.json["access_token"].as_str().unwrap().to_owned();
    let refresh2 = r.json["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    assert_eq!(
        app.call(Method::GET, "/v1/auth/me", None, Some(&access2))
            .await
            .status,
        StatusCode::OK
    );

    // The old token comes back (stolen copy): the whole family dies.
    let r = app
        .post("/v1/auth/refresh", json!({"refresh_token": refresh1}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json["detail"].as_str().unwrap().contains("revoked"));
    assert_eq!(
        app.post("/v1/auth/refresh", json!({"refresh_token": refresh2}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call(Method::GET, "/v1/auth/me", None, Some(&access2))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post("/v1/auth/refresh", json!({"refresh_token": "made-up"}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A fresh login is unaffected.
    let (access3, _) = app.login("carol@example.com").await;
    assert_eq!(
        app.call(Method::GET, "/v1/auth/me", None, Some(&access3))
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test(migrations = false)]
async fn logout_revokes_access_and_refresh_at_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, access, refresh) = app.signup("dave@example.com").await;
    let r = app
        .call(Method::POST, "/v1/auth/logout", None, Some(&access))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(Method::GET, "/v1/auth/me", None, Some(&access))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["detail"], "session revoked");
    assert_eq!(
        app.post("/v1/auth/refresh", json!({"refresh_token": refresh}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

/// Two instances of the services on one database: each caches live sessions, and a logout
/// on one reaches the other through PostgreSQL's NOTIFY.
#[sqlx::test(migrations = false)]
async fn a_logout_on_one_instance_stops_the_token_on_another(pool: PgPool) {
    let (a, b) = (TestApp::new(pool.clone()).await, TestApp::new(pool).await);
    let listening = async {
        while !(a.state.sessions.is_listening() && b.state.sessions.is_listening()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), listening)
        .await
        .expect("both session caches listen within 10 s");
    let (_, access, _) = a.signup("fay@example.com").await;
    let sid = b.state.tokens.verify_access(&access).unwrap().sid;
    let me = b
        .call(Method::GET, "/v1/auth/me", None, Some(&access))
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert!(
        b.state.sessions.is_live(sid),
        "instance b answers the next request from its cache"
    );
    let r = a
        .call(Method::POST, "/v1/auth/logout", None, Some(&access))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // The revoking instance knows at once; the other within the notification's delivery,
    // far below the cache's 10 s expiry (so a lost notification fails this test).
    let r = a
        .call(Method::GET, "/v1/auth/me", None, Some(&access))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let started = std::time::Instant::now();
    loop {
        let r = b
            .call(Method::GET, "/v1/auth/me", None, Some(&access))
            .await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_eq!(r.json["detail"], "session revoked");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "instance b still accepts a logged-out token after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "instance b refused the token {:?} after the logout",
        started.elapsed()
    );
}

#[sqlx::test(migrations = false)]
async fn expired_and_forged_tokens_are_refused(pool: PgPool) {
    let short = ServicesConfig {
        access_ttl_secs: 1,
        ..ServicesConfig::default()
    };
    let app = TestApp::with_config(pool.clone(), short).await;
    let (_, access, _) = app.signup("eve@example.com").await;
    assert_eq!(
        app.call(Method::GET, "/v1/auth/me", None, Some(&access))
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app
        .call(Method::GET, "/v1/auth/me", None, Some(&access))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["detail"], "access token expired");

    let other = TestApp::with_config(
        pool,
        ServicesConfig {
            jwt_secret: "another secret entirely".into(),
            ..ServicesConfig::default()
        },
    )
    .await;
    let (_, forged, _) = other.signup("mallory@example.com").await;
    let r = app
        .call(Method::GET, "/v1/auth/me", None, Some(&forged))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["detail"], "invalid access token");
    assert_eq!(
        app.call(Method::GET, "/v1/auth/me", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

/// Role x endpoint -> allowed or denied, for every role.
#[sqlx::test(migrations = false)]
async fn rbac_matrix(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (target, _, _) = app.signup("target@example.com").await;
    let roles = [
        "customer",
        "vendor",
        "support",
        "analyst",
        "fraud_analyst",
        "admin",
    ];
    for role in roles {
        let email = format!("{role}@example.com");
        let (id, _, _) = app.signup(&email).await;
        sqlx::query("UPDATE auth.users SET roles = ARRAY[$1] WHERE id = $2::uuid")
            .bind(role)
            .bind(&id)
            .execute(&app.pool)
            .await
            .unwrap();
        let (token, _) = app.login(&email).await;
        let cases = [
            (Method::GET, "/v1/auth/me".to_owned(), None, true),
            (
                Method::PUT,
                format!("/v1/auth/users/{target}/roles"),
                Some(json!({"roles": ["analyst"]})),
                role == "admin",
            ),
        ];
        for (method, uri, body, allowed) in cases {
            let r = app.call(method.clone(), &uri, body, Some(&token)).await;
            let want = if allowed {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(r.status, want, "{role} {method} {uri}: {}", r.json);
        }
    }
    let me = app
        .call(
            Method::GET,
            "/v1/auth/me",
            None,
            Some(&app.login("target@example.com").await.0),
        )
        .await;
    assert_eq!(
        me.json["roles"],
        json!(["analyst"]),
        "the admin's grant took effect"
    );
}

#[sqlx::test(migrations = false)]
async fn unknown_routes_are_problems_and_every_reply_has_a_request_id(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let r = app.call(Method::GET, "/v1/nothing-here", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers.contains_key("x-request-id"));
}

#[sqlx::test(migrations = false)]
async fn operators_grant_roles_by_email(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (id, _, _) = app.signup("Boss@Example.com").await;
    let granted = services::auth::grant_roles(
        &app.pool,
        " boss@example.COM",
        &[events::domain::users::Role::Admin],
    )
    .await
    .unwrap();
    assert_eq!(granted.map(|u| u.to_string()), Some(id));
    let (token, _) = app.login("boss@example.com").await;
    let me = app
        .call(Method::GET, "/v1/auth/me", None, Some(&token))
        .await;
    assert_eq!(me.json["roles"], json!(["admin"]));
    assert_eq!(
        services::auth::grant_roles(&app.pool, "nobody@example.com", &[])
            .await
            .unwrap(),
        None
    );
}
