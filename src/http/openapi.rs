//! The OpenAPI 3.1 document, generated from the handlers' annotations so it
//! says what the server does.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::Number;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
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
    // Types only query parameters refer to are not collected by utoipa.
    components(schemas(crate::store::trail::ExportFormat)),
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
    Router::new().route("/openapi.json", get(served))
}

/// The document as this server runs: `wait`'s maximum is the configured
/// `max_wait` (60 s at most), so a client generated from it never sends a
/// wait the server refuses.
async fn served(State(app): State<App>) -> Json<utoipa::openapi::OpenApi> {
    Json(document(app.settings.max_wait.as_secs()))
}

pub fn document(max_wait_secs: u64) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(op) = doc
        .paths
        .paths
        .get_mut("/v1/approvals/{id}")
        .and_then(|item| item.get.as_mut())
    {
        for p in op.parameters.iter_mut().flatten() {
            if let RefOr::T(p) = p
                && p.name == "wait"
                && let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut()
            {
                o.maximum = Some(Number::from(max_wait_secs as usize));
            }
        }
    }
    doc
}
