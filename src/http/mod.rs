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
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!(
                    "request",
                    method = %req.method(),
                    uri = %logged_uri(req.uri()),
                    version = ?req.version(),
                )
            },
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(AppError::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .with_state(app)
}

/// A request's URI as the trace logs it: a console sign-in link's token
/// (`/ui/login/<token>`) and the console's query strings (an OIDC
/// callback's code and state) are secrets, so they are left out.
fn logged_uri(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/ui/login/")
        && !matches!(rest, "key" | "oidc" | "oidc/callback")
    {
        return "/ui/login/…".into();
    }
    if path.starts_with("/ui") {
        return path.to_string();
    }
    uri.to_string()
}

#[cfg(test)]
mod tests {
    use super::logged_uri;

    #[test]
    fn console_secrets_in_uris_are_not_logged() {
        let u = |s: &str| logged_uri(&s.parse().unwrap());
        assert_eq!(u("/ui/login/AbCdEf0123456789"), "/ui/login/…");
        assert_eq!(
            u("/ui/login/oidc/callback?code=c&state=s"),
            "/ui/login/oidc/callback"
        );
        assert_eq!(u("/ui/login/key"), "/ui/login/key");
        assert_eq!(
            u("/v1/approvals?status=pending"),
            "/v1/approvals?status=pending"
        );
    }
}
