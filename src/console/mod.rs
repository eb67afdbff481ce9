//! The web console at `/ui/`: an inbox of what the signed-in person may
//! decide, the full view of a request with its timeline, the audit
//! explorer, and a read-only admin page.
//!
//! It is one more surface over the same service: decisions go through
//! `App::decide` with channel `console` (the shared rules refuse or count
//! them, and their messages are the chat's, `kit::decide::refusal`), the
//! audit pages run the `/v1/audit` filters, and the inbox lists what
//! `rules::eligible` says the person may decide. Nothing here decides.
//!
//! Pages are rendered on the server from templates compiled into the
//! binary (HTML autoescape on: agent text is inert); one CSS file and one
//! small script are served from `/ui/static/`, and every console response
//! carries a strict Content-Security-Policy (no inline script, nothing
//! from elsewhere). Sign-in ([`login`]) makes a session cookie
//! ([`session`]); every state-changing form carries the session's CSRF
//! token.

pub mod admin;
pub mod assets;
pub mod audit;
pub mod error;
pub mod events;
pub mod inbox;
pub mod links;
pub mod login;
pub mod oidc;
pub mod request;
pub mod session;
pub mod templates;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::service::App;

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(inbox::page))
        .route("/ui/inbox/list", get(inbox::list))
        .route("/ui/events", get(events::stream))
        .route("/ui/requests/{id}", get(request::page))
        .route("/ui/requests/{id}/decide", post(request::decide))
        .route("/ui/audit", get(audit::page))
        .route("/ui/audit/export", get(audit::export))
        .route("/ui/admin", get(admin::page))
        .route("/ui/login", get(login::page))
        .route("/ui/login/key", post(login::with_key))
        .route("/ui/login/oidc", get(oidc::start))
        .route("/ui/login/oidc/callback", get(oidc::callback))
        .route(
            "/ui/login/{token}",
            get(login::confirm_page).post(login::with_link),
        )
        .route("/ui/logout", post(login::logout))
        .route("/ui/static/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
}

/// The headers every console response carries.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A rendered page as an HTML response.
pub fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// `next` if it is a console path (`/ui/…`, no scheme, host or `//`), else
/// the inbox: a sign-in link cannot send anyone elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_console_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/ui/requests/1")), "/ui/requests/1");
        assert_eq!(safe_next(Some("https://evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/");
        assert_eq!(safe_next(Some("/ui/\\evil")), "/ui/");
        assert_eq!(safe_next(Some("/v1/approvals")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }
}
