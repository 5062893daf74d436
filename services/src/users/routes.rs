//! User endpoints under `/v1/users`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use events::Country;
use events::domain::users::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::ApiPath;
use crate::http::openapi::ProblemDoc;
use crate::http::{ApiJson, AuthUser, FieldError, Problem, require_role};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(addresses, add_address))
        .routes(routes!(delete_address))
        .routes(routes!(profile_of))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Profile {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub locale: String,
    pub phone: Option<String>,
    pub preferences: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Address {
    pub id: Uuid,
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    pub is_default: bool,
}

async fn load(app: &AppState, user: Uuid) -> Result<Profile, Problem> {
    #[derive(sqlx::FromRow)]
    struct Row {
        email: String,
        display_name: String,
        locale: Option<String>,
        phone: Option<String>,
        preferences: Option<serde_json::Value>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT u.email, u.display_name, p.locale, p.phone, p.preferences
         FROM auth.users u LEFT JOIN users.profiles p ON p.user_id = u.id WHERE u.id = $1",
    )
    .bind(user)
    .fetch_optional(&app.pool)
    .await?;
    let Row {
        email,
        display_name,
        locale,
        phone,
        preferences,
    } = row.ok_or_else(|| Problem::not_found("no such user"))?;
    Ok(Profile {
        user_id: user,
        email,
        display_name,
        locale: locale.unwrap_or_else(|| "en".into()),
        phone,
        preferences: preferences.unwrap_or_else(|| serde_json::json!({})),
    })
}

#[utoipa::path(
    get,
    path = "/me",
    tag = "users",
    responses((status = 200, body = Profile), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn me(State(app): State<AppState>, user: AuthUser) -> Result<Json<Profile>, Problem> {
    load(&app, user.user_id).await.map(Json)
}

#[utoipa::path(
    get,
    path = "/{id}",
    tag = "users",
    summary = "Anyone's profile (support, admin)",
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = Profile), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role does not allow this", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn profile_of(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Profile>, Problem> {
    if id != user.user_id {
        require_role(&user, &[Role::Support, Role::Admin])?;
    }
    load(&app, id).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    pub locale: Option<String>,
    pub phone: Option<String>,
    pub preferences: Option<serde_json::Map<String, serde_json::Value>>,
}

#[utoipa::path(
    patch,
    path = "/me",
    tag = "users",
    request_body = ProfilePatch,
    responses((status = 200, body = Profile), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn update_me(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<ProfilePatch>,
) -> Result<Json<Profile>, Problem> {
    if let Some(n) = &req.display_name
        && (n.trim().is_empty() || n.chars().count() > 80)
    {
        return Err(Problem::invalid(
            "display_name",
            "must be 1 to 80 characters",
        ));
    }
    if let Some(l) = &req.locale
        && !(2..=10).contains(&l.len())
    {
        return Err(Problem::invalid(
            "locale",
            "a language tag such as en or de-CH",
        ));
    }
    if let Some(p) = &req.phone
        && !(p.len() <= 20 && p.chars().all(|c| c.is_ascii_digit() || "+ -()".contains(c)))
    {
        return Err(Problem::invalid(
            "phone",
            "digits, spaces and + - ( ) only, at most 20",
        ));
    }
    let mut tx = app.pool.begin().await?;
    if let Some(n) = &req.display_name {
        sqlx::query("UPDATE auth.users SET display_name = $2 WHERE id = $1")
            .bind(user.user_id)
            .bind(n.trim())
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO users.profiles (user_id, locale, phone, preferences) VALUES ($1, COALESCE($2, 'en'), $3, COALESCE($4, '{}'))
         ON CONFLICT (user_id) DO UPDATE SET
           locale = COALESCE($2, users.profiles.locale),
           phone = COALESCE($3, users.profiles.phone),
           preferences = users.profiles.preferences || COALESCE($4, '{}'),
           updated_at = now()",
    )
    .bind(user.user_id)
    .bind(&req.locale)
    .bind(&req.phone)
    .bind(req.preferences.map(serde_json::Value::Object))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    load(&app, user.user_id).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    #[serde(default)]
    pub is_default: bool,
}

#[utoipa::path(
    get,
    path = "/me/addresses",
    tag = "users",
    responses((status = 200, body = Vec<Address>), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn addresses(
    State(app): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<Address>>, Problem> {
    let rows: Vec<Address> = sqlx::query_as(
        "SELECT id, name, line1, line2, city, postal_code, country, is_default
         FROM users.addresses WHERE user_id = $1 ORDER BY is_default DESC, created_at",
    )
    .bind(user.user_id)
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(rows))
}

#[utoipa::path(
    post,
    path = "/me/addresses",
    tag = "users",
    request_body = NewAddress,
    responses((status = 201, body = Vec<Address>), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "invalid input, field by field", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn add_address(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<NewAddress>,
) -> Result<(StatusCode, Json<Vec<Address>>), Problem> {
    let mut errors = Vec::new();
    for (field, value, max) in [
        ("name", &req.name, 100),
        ("line1", &req.line1, 200),
        ("city", &req.city, 100),
        ("postal_code", &req.postal_code, 20),
    ] {
        if value.trim().is_empty() || value.len() > max {
            errors.push(FieldError {
                field: field.into(),
                message: format!("must be 1 to {max} characters"),
            });
        }
    }
    if let Err(e) = Country::parse(req.country.clone()) {
        errors.push(FieldError {
            field: "country".into(),
            message: e.to_string(),
        });
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let mut tx = app.pool.begin().await?;
    if req.is_default {
        sqlx::query("UPDATE users.addresses SET is_default = false WHERE user_id = $1")
            .bind(user.user_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO users.addresses (id, user_id, name, line1, line2, city, postal_code, country, is_default)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(user.user_id)
    .bind(req.name.trim())
    .bind(req.line1.trim())
    .bind(&req.line2)
    .bind(req.city.trim())
    .bind(req.postal_code.trim())
    .bind(&req.country)
    .bind(req.is_default)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let Json(list) = addresses(State(app), user).await?;
    Ok((StatusCode::CREATED, Json(list)))
}

#[utoipa::path(
    delete,
    path = "/me/addresses/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "address id")),
    responses((status = 204, description = "deleted"), (status = 401, description = "not signed in, or the token is expired, forged or revoked", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "not found", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
async fn delete_address(
    State(app): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, Problem> {
    let done = sqlx::query("DELETE FROM users.addresses WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user.user_id)
        .execute(&app.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Problem::not_found("no such address"));
    }
    Ok(StatusCode::NO_CONTENT)
}
