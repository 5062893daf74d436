//! The OpenAPI description, generated from the handlers' `#[utoipa::path]` annotations and
//! the types' `ToSchema` derives as the routers are assembled, so the routes and the spec
//! cannot drift apart. Served at `/openapi.json` with Swagger UI at `/swagger-ui`; the
//! committed `services/openapi.json` has a drift test.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::http::problem::FieldError;

/// The body of every error (`application/problem+json`, RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDoc {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// One entry per invalid field (validation errors only).
    pub errors: Vec<FieldError>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shopstream storefront and operations API",
        description = "Errors are application/problem+json. Sign in at /v1/auth/login and send the access token as a bearer token."
    ),
    modifiers(&BearerAuth),
    components(schemas(ProblemDoc, FieldError))
)]
pub struct ApiDoc;
