//! The HTTP surface: one module per surface (`api`, `audit`, `ops`), each
//! owning its handlers and types; the chat channels add their own routers.
//! This module assembles them with the layers every route shares: a body
//! size limit (413), tracing, panic-to-500 as a last resort, and the rate
//! limits that the shared auth extractor (`auth::Authed`) applies.

pub mod api;
pub mod audit;
pub mod auth;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod permits;

use axum::Router;
use std::sync::Arc;

use axum::Extension;
use axum::extract::DefaultBodyLimit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::service::App;

/// The whole application router; `channels` are the Slack / Teams routers.
pub fn router(app: App, channels: Vec<Router<App>>) -> Router {
    let limit = app.settings.max_body_bytes;
    let rate_limits = Arc::new(crate::net::rate_limit::RateLimits::new(
        &app.settings.network,
    ));
    let mut r = Router::new()
        .merge(api::routes())
        .merge(audit::routes())
        .merge(ops::routes())
        .merge(openapi::routes())
        .merge(permits::routes())
        .merge(crate::mcp::routes(&app))
        .merge(crate::console::routes());
    for c in channels {
        r = r.merge(c);
    }
    r.fallback(|| async { AppError::NotFound("no such endpoint; see GET /openapi.json".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(rate_limits))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(AppError::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .with_state(app)
}
