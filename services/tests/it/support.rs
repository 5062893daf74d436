//! Calling the router like a client would, and reading problem+json answers.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use services::{AppState, ServicesConfig, migrate, router};
use sqlx::PgPool;
use tower::ServiceExt;

pub struct TestApp {
    pub router: Router,
    pub pool: PgPool,
    /// The state behind the router: the models it serves (tests promote and refresh them
    /// directly), its session cache, its token keys.
    pub state: AppState,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
}

/// The PostgreSQL backend (process id) serving a connection.
pub async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// The `field` of each entry of a problem's `errors`, in order.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl TestApp {
    pub async fn new(pool: PgPool) -> TestApp {
        Self::with_config(pool, ServicesConfig::default()).await
    }

    pub async fn with_config(pool: PgPool, cfg: ServicesConfig) -> TestApp {
        Self::build(pool, cfg, None).await
    }

    /// With the clickstream intake connected to Kafka under `kafka`'s topic prefix.
    pub async fn with_events(pool: PgPool, kafka: &ingest::KafkaConfig) -> TestApp {
        let producer = ingest::EventProducer::new(kafka).expect("producer");
        Self::build(pool, ServicesConfig::default(), Some(producer)).await
    }

    async fn build(
        pool: PgPool,
        cfg: ServicesConfig,
        events: Option<ingest::EventProducer>,
    ) -> TestApp {
        migrate(&pool).await.expect("migrations");
        let mut state = AppState::new(pool.clone(), &cfg);
        if let Some(p) = events {
            state = state.with_events(p);
        }
        TestApp {
            router: router(state.clone(), &cfg),
            state,
            pool,
        }
    }

    pub async fn raw(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() && !bytes.is_empty() {
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                "application/problem+json",
                "errors are problem+json"
            );
        }
        Reply {
            status,
            headers,
            json,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-forwarded-for", "198.51.100.7");
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&v).unwrap())),
            None => b.body(Body::empty()),
        };
        self.raw(req.unwrap()).await
    }

    /// `POST /v1/checkout` with an Idempotency-Key.
    pub fn checkout_request(token: &str, key: &str, body: &Value) -> Request<Body> {
        Request::post("/v1/checkout")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    pub async fn checkout(&self, token: &str, key: &str, body: &Value) -> Reply {
        self.raw(Self::checkout_request(token, key, body)).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body), None).await
    }

    /// Registers and logs in; returns (user id, access token, refresh token).
    pub async fn signup(&self, email: &str) -> (String, String, String) {
        let r = self
            .post(
                "/v1/auth/register",
                serde_json::json!({"email": email, "password": "correct horse battery", "display_name": "Test", "country": "DE"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let id = r.json["user_id"].as_str().unwrap().to_owned();
        let (access, refresh) = self.login(email).await;
        (id, access, refresh)
    }

    pub async fn login(&self, email: &str) -> (String, String) {
        let r = self
            .post(
                "/v1/auth/login",
                serde_json::json!({"email": email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        (
            r.json["access_token"].as_str().unwrap().to_owned(),
            r.json["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A user with `role` and a live session, made directly in the database (no argon2 on
    /// this path, so hundreds of buyers are cheap); returns (user id, access token).
    pub async fn quick_user(&self, role: &str) -> (uuid::Uuid, String) {
        let id = uuid::Uuid::now_v7();
        let session = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO auth.users (id, email, password_hash, display_name, country, roles)
             VALUES ($1, $2, 'not-a-hash', 'Quick', 'DE', ARRAY[$3])",
        )
        .bind(id)
        .bind(format!("{id}@example.com"))
        .bind(role)
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO auth.sessions (id, user_id, ip) VALUES ($1, $2, '127.0.0.1')")
            .bind(session)
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
        let role: events::domain::users::Role =
            serde_json::from_value(Value::String(role.into())).unwrap();
        let keys = services::auth::tokens::TokenKeys::new(
            services::app::DEV_JWT_SECRET.as_bytes(),
            std::time::Duration::from_secs(900),
            std::time::Duration::from_secs(900),
        );
        (id, keys.issue_access(id, session, &[role]))
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}
