//! The OpenAPI 3.1 document, generated from the handlers' annotations so it
//! says what the server does.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::service::App;

#[derive(OpenApi)]
#[openapi(
    info(title = "Countersign", description = "An approval gate for autonomous systems: a human other than the requester countersigns every dangerous action."),
    paths(
        super::api::create, super::api::show, super::api::list, super::api::decide, super::api::cancel,
        super::audit::query, super::audit::export, super::audit::verify,
        super::ops::healthz, super::ops::readyz, super::ops::metrics_text,
        super::permits::show, super::permits::jwks, super::permits::redeem,
    ),
    modifiers(&Bearer),
    tags((name = "approvals"), (name = "audit"), (name = "operations"), (name = "permits"))
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A Countersign API key (cs_…)"))
                    .build(),
            ),
        );
    }
}

pub fn routes() -> Router<App> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
