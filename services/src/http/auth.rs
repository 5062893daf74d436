//! Authentication of requests: a bearer JWT access token whose session is still live, and
//! role checks. Logout revokes the session, so its access tokens stop working at once (the
//! liveness of sessions is cached per process, kept in step by `auth::sessions`).

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use events::domain::users::Role;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::tokens::{Claims, TokenError};
use crate::http::layers::VerifiedClaims;
use crate::http::problem::Problem;

/// The caller, from a valid access token of a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub roles: Vec<Role>,
}

impl AuthUser {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// 403 unless the user holds one of `roles`.
pub fn require_role(user: &AuthUser, roles: &[Role]) -> Result<(), Problem> {
    if roles.iter().any(|r| user.has(*r)) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "requires one of the roles {roles:?}"
        )))
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let app = AppState::from_ref(state);
        // Checked by the rate-limit layer already (every `/v1` route is behind it); without
        // the layer, the token is checked here.
        if let Some(VerifiedClaims(claims)) = parts.extensions.remove::<VerifiedClaims>() {
            return authorize(&app, claims).await;
        }
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Problem::unauthorized("missing bearer token"))?;
        authenticate(&app, token).await
    }
}

/// The user of an access token: valid, unexpired, and of a session not revoked. Other
/// front ends than HTTP (the warehouse's PostgreSQL protocol) sign in with it too.
pub async fn authenticate(app: &AppState, token: &str) -> Result<AuthUser, Problem> {
    let claims = app.tokens.verify_access(token).map_err(|e| match e {
        TokenError::Expired => Problem::unauthorized("access token expired"),
        TokenError::Invalid => Problem::unauthorized("invalid access token"),
    })?;
    authorize(app, claims).await
}

/// The user of verified `claims`, if their session is not revoked.
async fn authorize(app: &AppState, claims: Claims) -> Result<AuthUser, Problem> {
    if !app.sessions.is_live(claims.sid) {
        let generation = app.sessions.generation();
        let live: Option<bool> =
            sqlx::query_scalar("SELECT revoked_at IS NULL FROM auth.sessions WHERE id = $1")
                .bind(claims.sid)
                .fetch_optional(&app.pool)
                .await?;
        if live != Some(true) {
            return Err(Problem::unauthorized("session revoked"));
        }
        app.sessions.remember(claims.sid, generation);
    }
    Ok(AuthUser {
        user_id: claims.sub,
        session_id: claims.sid,
        roles: claims.roles,
    })
}
