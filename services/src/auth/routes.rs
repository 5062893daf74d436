//! The auth endpoints under `/v1/auth`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use events::domain::users::{Role, UserLoggedIn, UserRegistered};
use events::{Country, Envelope};
use ingest::outbox::enqueue;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::password;
use crate::auth::tokens::{hash_refresh_token, new_refresh_token};
use crate::http::extract::ApiPath;
use crate::http::openapi::ProblemDoc;
use crate::http::{ApiJson, AuthUser, ClientIp, FieldError, Problem, require_role};

const SOURCE: &str = "/shopstream/auth";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(set_roles))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub display_name: String,
    pub country: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
}

fn parse_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace);
    ok.then_some(email)
}

pub(crate) fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(crate::http::wire_name).collect()
}

fn parse_roles(names: &[String]) -> Vec<Role> {
    names
        .iter()
        .filter_map(|n| serde_json::from_value(serde_json::Value::String(n.clone())).ok())
        .collect()
}

#[utoipa::path(
    post,
    path = "/register",
    tag = "auth",
    summary = "Create a customer account",
    request_body = RegisterRequest,
    responses((status = 201, body = UserView), (status = 409, description = "conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn register(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<UserView>), Problem> {
    let mut errors = Vec::new();
    let email = parse_email(&req.email);
    if email.is_none() {
        errors.push(FieldError::new("email", "not a valid e-mail address"));
    }
    let pw_len = req.password.chars().count();
    if !(10..=128).contains(&pw_len) {
        errors.push(FieldError::new("password", "must be 10 to 128 characters"));
    }
    let name = req.display_name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 80 {
        errors.push(FieldError::new(
            "display_name",
            "must be 1 to 80 characters",
        ));
    }
    let country = Country::parse(req.country.clone());
    if let Err(e) = &country {
        errors.push(FieldError::new("country", e.to_string()));
    }
    let (Some(email), Ok(country), true) = (email, country, errors.is_empty()) else {
        return Err(Problem::validation(errors));
    };
    let hash = password::hash(req.password)
        .await
        .map_err(Problem::internal)?;
    let user_id = Uuid::now_v7();
    let roles = vec![Role::Customer];

    let mut tx = app.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO auth.users (id, email, password_hash, display_name, country, roles)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
    )
    .bind(user_id)
    .bind(&email)
    .bind(&hash)
    .bind(&name)
    .bind(country.as_str())
    .bind(role_names(&roles))
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Problem::conflict(
            "an account with this e-mail already exists",
        ));
    }
    let event = UserRegistered {
        user_id,
        email: email.clone(),
        display_name: name.clone(),
        country,
        role: Role::Customer,
        registered_at: Utc::now(),
    };
    enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            user_id,
            email,
            display_name: name,
            roles,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    pub device_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

async fn issue_pair(
    app: &AppState,
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    session: Uuid,
    roles: &[Role],
) -> Result<TokenPair, Problem> {
    let refresh = new_refresh_token();
    let ttl = app.tokens.refresh_ttl;
    sqlx::query(
        "INSERT INTO auth.refresh_tokens (token_hash, session_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(hash_refresh_token(&refresh))
    .bind(session)
    .bind(ttl.as_secs_f64())
    .execute(tx)
    .await?;
    Ok(TokenPair {
        access_token: app.tokens.issue_access(user, session, roles),
        token_type: "Bearer".into(),
        expires_in: app.tokens.access_ttl.as_secs(),
        refresh_token: refresh,
        refresh_expires_in: ttl.as_secs(),
    })
}

#[utoipa::path(
    post,
    path = "/login",
    tag = "auth",
    summary = "Sign in: access and refresh tokens",
    request_body = LoginRequest,
    responses((status = 200, body = TokenPair), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"), (status = 429, description = "rate limited; see Retry-After", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn login(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenPair>, Problem> {
    let account = req.email.trim().to_lowercase();
    app.limiter
        .check(&account, &ip)
        .map_err(Problem::too_many_requests)?;
    let row: Option<(Uuid, String, Vec<String>)> =
        sqlx::query_as("SELECT id, password_hash, roles FROM auth.users WHERE email = $1")
            .bind(&account)
            .fetch_optional(&app.pool)
            .await?;
    let verified = match &row {
        Some((_, phc, _)) => password::verify(req.password, phc.clone()).await,
        None => false,
    };
    let (true, Some((user_id, _, roles))) = (verified, row) else {
        app.limiter.record_failure(&account, &ip);
        metrics::counter!("shopstream_auth_login_failures_total").increment(1);
        return Err(Problem::unauthorized("invalid e-mail or password"));
    };
    app.limiter.record_success(&account);
    let roles = parse_roles(&roles);
    let session = Uuid::now_v7();
    let mut tx = app.pool.begin().await?;
    sqlx::query("INSERT INTO auth.sessions (id, user_id, ip, device_id) VALUES ($1, $2, $3, $4)")
        .bind(session)
        .bind(user_id)
        .bind(&ip)
        .bind(&req.device_id)
        .execute(&mut *tx)
        .await?;
    let pair = issue_pair(&app, &mut tx, user_id, session, &roles).await?;
    let event = UserLoggedIn {
        user_id,
        session_id: session,
        ip,
        device_id: req.device_id.unwrap_or_else(|| "unknown".into()),
        user_agent: None,
    };
    enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    tx.commit().await?;
    Ok(Json(pair))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(
    post,
    path = "/refresh",
    tag = "auth",
    summary = "Rotate a refresh token (a reused one revokes the session)",
    request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json"))
)]
async fn refresh(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, Problem> {
    let mut tx = app.pool.begin().await?;
    let row: Option<(Uuid, Uuid, bool, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT s.id, s.user_id, rt.used_at IS NOT NULL, s.revoked_at IS NOT NULL,
                rt.expires_at < now(), u.roles
         FROM auth.refresh_tokens rt
         JOIN auth.sessions s ON s.id = rt.session_id
         JOIN auth.users u ON u.id = s.user_id
         WHERE rt.token_hash = $1
         FOR UPDATE OF rt, s",
    )
    .bind(hash_refresh_token(&req.refresh_token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((session, user, used, revoked, expired, roles)) = row else {
        return Err(Problem::unauthorized("unknown refresh token"));
    };
    if revoked {
        return Err(Problem::unauthorized("session revoked"));
    }
    if used {
        // A rotated token came back: someone holds a copy. End the whole session.
        sqlx::query(
            "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'refresh_token_reuse'
             WHERE id = $1",
        )
        .bind(session)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        app.sessions.forget(session);
        tracing::warn!(%session, %user, "refresh token reuse: session revoked");
        return Err(Problem::unauthorized(
            "refresh token already used; the session has been revoked",
        ));
    }
    if expired {
        return Err(Problem::unauthorized("refresh token expired"));
    }
    sqlx::query("UPDATE auth.refresh_tokens SET used_at = now() WHERE token_hash = $1")
        .bind(hash_refresh_token(&req.refresh_token))
        .execute(&mut *tx)
        .await?;
    let pair = issue_pair(&app, &mut tx, user, session, &parse_roles(&roles)).await?;
    tx.commit().await?;
    Ok(Json(pair))
}

#[utoipa::path(
    post,
    path = "/logout",
    tag = "auth",
    summary = "Revoke the session at once",
    responses((status = 204, description = "session revoked"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn logout(State(app): State<AppState>, user: AuthUser) -> Result<StatusCode, Problem> {
    sqlx::query(
        "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'logout'
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(user.session_id)
    .execute(&app.pool)
    .await?;
    app.sessions.forget(user.session_id);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/me",
    tag = "auth",
    responses((status = 200, body = UserView), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn me(State(app): State<AppState>, user: AuthUser) -> Result<Json<UserView>, Problem> {
    let (email, display_name, roles): (String, String, Vec<String>) =
        sqlx::query_as("SELECT email, display_name, roles FROM auth.users WHERE id = $1")
            .bind(user.user_id)
            .fetch_one(&app.pool)
            .await?;
    Ok(Json(UserView {
        user_id: user.user_id,
        email,
        display_name,
        roles: parse_roles(&roles),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    pub roles: Vec<Role>,
}

/// Admins grant roles; takes effect at the user's next login or refresh.
#[utoipa::path(
    put,
    path = "/users/{id}/roles",
    tag = "auth",
    summary = "Grant roles (admin)",
    request_body = RolesRequest,
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn set_roles(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<RolesRequest>,
) -> Result<Json<UserView>, Problem> {
    require_role(&user, &[Role::Admin])?;
    if req.roles.is_empty() {
        return Err(Problem::validation(vec![FieldError::new(
            "roles",
            "at least one role",
        )]));
    }
    let row: Option<(String, String)> = sqlx::query_as(
        "UPDATE auth.users SET roles = $2 WHERE id = $1 RETURNING email, display_name",
    )
    .bind(id)
    .bind(role_names(&req.roles))
    .fetch_optional(&app.pool)
    .await?;
    let (email, display_name) = row.ok_or_else(|| Problem::not_found("no such user"))?;
    Ok(Json(UserView {
        user_id: id,
        email,
        display_name,
        roles: req.roles,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            parse_email(" Ada@Example.COM ").as_deref(),
            Some("ada@example.com")
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.com",
            "ada@x",
            "a b@x.com",
            "ada@.com",
            "a@b@c.com",
        ] {
            assert!(parse_email(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        let all = [
            Role::Customer,
            Role::Vendor,
            Role::Support,
            Role::Analyst,
            Role::FraudAnalyst,
            Role::Admin,
        ];
        assert_eq!(parse_roles(&role_names(&all)), all);
        assert_eq!(role_names(&[Role::FraudAnalyst]), ["fraud_analyst"]);
    }
}
