//! Signing in and out.
//!
//! - A one-time link from chat: `GET /ui/login/<token>` shows a confirm
//!   page and consumes nothing (link unfurlers and prefetchers fetch it);
//!   its `POST` consumes the link (one conditional UPDATE, store::console),
//!   opens the session and audits `console.signed_in` in the same write.
//! - A person's API key (`POST /ui/login/key`), for development.
//! - `POST /ui/logout` (with the session's CSRF token).
//!
//! After sign-in the browser goes to `next` if it is a console path
//! ([`super::safe_next`]), else to the inbox.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::error::{ConsoleError, ConsoleResult};
use super::session::{self, Signed};
use super::{html, safe_next, templates};
use crate::clock;
use crate::domain::Principal;
use crate::error::AppError;
use crate::service::App;
use crate::store::console::{self, LinkState};
use crate::store::keys::{self, token_hash};

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// The sign-in page: how to get a link, and the API key form.
pub async fn page(State(app): State<App>, Query(q): Query<Next>) -> Response {
    html(templates::render(
        "login.html",
        context! {
            title => "Sign in", next => safe_next(q.next.as_deref()), who => (), error => (),
            oidc => oidc_start(&app, q.next.as_deref()),
        },
    ))
}

/// Where the "sign in with your identity provider" button goes, if one is configured.
fn oidc_start(app: &App, next: Option<&str>) -> Option<String> {
    app.settings.console.oidc.as_ref().map(|_| {
        format!(
            "/ui/login/oidc?next={}",
            urlencoding::encode(&safe_next(next))
        )
    })
}

fn signed_in(app: &App, token: &str, next: &str) -> Response {
    (
        [(header::SET_COOKIE, session::set_cookie(app, Some(token)))],
        Redirect::to(next),
    )
        .into_response()
}

fn link_refusal(state: &LinkState) -> ConsoleError {
    match state {
        LinkState::Used => ConsoleError::Gone(
            "This sign-in link has already been used; each link signs in once. Ask for a new one with /audit login.".into(),
        ),
        LinkState::Expired => ConsoleError::Gone(
            "This sign-in link has expired; links are valid for a few minutes. Ask for a new one with /audit login.".into(),
        ),
        _ => ConsoleError::NotFound(
            "This sign-in link is not known. Ask for a new one with /audit login.".into(),
        ),
    }
}

/// `GET /ui/login/<token>`: who the link signs in, and a button to do it.
pub async fn confirm_page(
    State(app): State<App>,
    Path(token): Path<String>,
    Query(q): Query<Next>,
) -> ConsoleResult<Response> {
    let state = console::link_state(&app.store, &token_hash(&token), clock::now()).await?;
    let LinkState::Valid { principal } = state else {
        return Err(link_refusal(&state));
    };
    Ok(html(templates::render(
        "link.html",
        context! {
            title => "Sign in",
            principal => crate::channels::kit::view::shown_principal(&principal),
            action => format!("/ui/login/{token}"),
            next => safe_next(q.next.as_deref()),
            who => (),
        },
    )))
}

#[derive(Deserialize)]
pub struct LinkForm {
    next: Option<String>,
}

/// `POST /ui/login/<token>`: consumes the link and opens the session.
pub async fn with_link(
    State(app): State<App>,
    Path(token): Path<String>,
    Form(f): Form<LinkForm>,
) -> ConsoleResult<Response> {
    let hash = token_hash(&token);
    let settings = app.settings.console.clone();
    let consumed_hash = hash.clone();
    let opened: Option<String> = app
        .store
        .write(move |ctx| {
            Box::pin(async move {
                let Some(who) = console::consume_link(ctx, &consumed_hash).await? else {
                    return Ok(None);
                };
                let now = ctx.now;
                session::begin(ctx, &settings, &who, "link", "", now)
                    .await
                    .map(Some)
            })
        })
        .await?;
    match opened {
        Some(t) => Ok(signed_in(&app, &t, &safe_next(f.next.as_deref()))),
        None => {
            let state = console::link_state(&app.store, &hash, clock::now()).await?;
            Err(link_refusal(&state))
        }
    }
}

/// The caller's address and the service's rate limits, as the API's
/// auth extractor reads them: a key typed into the console is held to the
/// same per-address limit on failures as a key sent to the API.
pub struct Peer {
    limits: Option<std::sync::Arc<crate::net::rate_limit::RateLimits>>,
    ip: Option<std::net::IpAddr>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer {
            limits: parts.extensions.get().cloned(),
            ip: parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        })
    }
}

const TOO_MANY: &str = "Too many failed sign-ins from this address; wait a little and try again.";

#[derive(Deserialize)]
pub struct KeyForm {
    key: Option<String>,
    next: Option<String>,
}

/// `POST /ui/login/key`: signs a person in with their API key.
pub async fn with_key(
    State(app): State<App>,
    peer: Peer,
    Form(f): Form<KeyForm>,
) -> ConsoleResult<Response> {
    let next = safe_next(f.next.as_deref());
    let refuse = |error: &str| {
        let page = templates::render(
            "login.html",
            context! {
                title => "Sign in", next => next.clone(), who => (), error => error,
                oidc => oidc_start(&app, Some(&next)),
            },
        );
        Ok((axum::http::StatusCode::UNAUTHORIZED, html(page)).into_response())
    };
    let token = f.key.unwrap_or_default();
    let limit = peer.limits.as_ref().zip(peer.ip);
    if let Some((l, ip)) = limit
        && l.barred(ip, Some(token.trim())).is_err()
    {
        return Err(ConsoleError::TooMany(TOO_MANY.into()));
    }
    let key = match keys::authenticate(&app.store, token.trim()).await {
        Ok(k) => k,
        Err(AppError::Unauthorized(_)) => {
            if let Some((l, ip)) = limit
                && l.failed(ip).is_err()
            {
                return Err(ConsoleError::TooMany(TOO_MANY.into()));
            }
            return refuse("That API key is not valid (or has been revoked).");
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(l) = &peer.limits {
        l.remember(token.trim());
    }
    if !key.principal.is_human() {
        return refuse("That key belongs to an agent or service; the console is for people.");
    }
    let scopes = key
        .scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let settings = app.settings.console.clone();
    let who: Principal = key.principal.clone();
    let t = app
        .store
        .write(move |ctx| {
            Box::pin(async move {
                let now = ctx.now;
                session::begin(ctx, &settings, &who, "api_key", &scopes, now).await
            })
        })
        .await?;
    Ok(signed_in(&app, &t, &next))
}

/// `POST /ui/logout`: ends the session and clears the cookie.
pub async fn logout(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    signed: Signed,
    form: session::Posted,
) -> ConsoleResult<Response> {
    signed.check_csrf(form.get("csrf"))?;
    if let Some(token) = session::cookie(&headers, session::COOKIE) {
        let hash = token_hash(&token);
        let who = signed.who.clone();
        app.store
            .write(move |ctx| {
                Box::pin(async move {
                    if console::end_session(ctx, &hash).await? {
                        ctx.audit(
                            who.as_str(),
                            None,
                            "console.signed_out",
                            &serde_json::json!({}),
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await?;
    }
    Ok((
        [(header::SET_COOKIE, session::set_cookie(&app, None))],
        Redirect::to("/ui/login"),
    )
        .into_response())
}
