//! Console sessions: the cookie, the extractor that turns it into the
//! signed-in principal, and the CSRF token bound to each session.
//!
//! The cookie holds 32 random bytes (base64url); the database holds only
//! their SHA-256. It is `HttpOnly` (no script reads it), `SameSite=Strict`
//! (no other site's page sends it), `Secure` when the public URL is https,
//! scoped to `/ui`. A session ends when idle for `session_idle`, at
//! `session_max` after sign-in whatever happens, or at logout.
//!
//! Every state-changing form carries the session's CSRF secret in a
//! hidden field; [`Signed::check_csrf`] compares it in constant time
//! before anything changes, and a POST without it is a 403.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::{ConsoleError, ConsoleResult};
use crate::clock;
use crate::domain::Principal;
use crate::service::App;
use crate::store::WriteCtx;
use crate::store::console::{self, NewSession, Session};
use crate::store::keys::{self, Scope};

pub const COOKIE: &str = "countersign_session";

/// A live session, as a handler sees it.
pub struct Signed {
    pub who: Principal,
    pub session: Session,
}

/// 32 random bytes, base64url: a session token, a link token, a CSRF secret.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl Signed {
    /// The token every state-changing form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.session.csrf_secret
    }

    /// 403 unless `given` is this session's CSRF token.
    pub fn check_csrf(&self, given: Option<&str>) -> ConsoleResult<()> {
        let ok = given
            .is_some_and(|g| bool::from(g.as_bytes().ct_eq(self.session.csrf_secret.as_bytes())));
        if ok {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(
                "This form is missing its security token (or it belongs to another session): nothing was changed. Reload the page and try again.".into(),
            ))
        }
    }

    /// The scopes the session signed in with (an API key's), if any.
    fn has_scope(&self, scope: Scope) -> bool {
        self.session
            .scopes
            .split(',')
            .filter_map(|s| Scope::parse(s).ok())
            .any(|s| s == scope || s == Scope::Admin)
    }

    /// Whether this person may read the audit trail: the policy's auditors
    /// (as in chat), or a session opened with an `audit` or `admin` key.
    pub fn may_audit(&self, app: &App) -> bool {
        app.is_auditor(&self.who) || self.has_scope(Scope::Audit)
    }

    /// Whether this person may see the admin page (keys, identity links).
    pub fn may_admin(&self, app: &App) -> bool {
        app.is_auditor(&self.who) || self.has_scope(Scope::Admin)
    }

    /// When the person last proved who they are.
    pub fn auth_time(&self) -> Option<DateTime<Utc>> {
        clock::parse(&self.session.auth_time)
    }
}

impl FromRequestParts<App> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let not_signed_in = || {
            if parts.method == Method::GET || parts.method == Method::HEAD {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/ui/".into());
                let cross_site = parts
                    .headers
                    .get("sec-fetch-site")
                    .is_some_and(|v| v == "cross-site");
                if cross_site {
                    ConsoleError::Renavigate { to: next }
                } else {
                    ConsoleError::SignIn { next }
                }
            } else {
                ConsoleError::Forbidden(
                    "You are not signed in (or your session ended): nothing was changed.".into(),
                )
            }
        };
        let Some(token) = cookie(&parts.headers, COOKIE) else {
            return Err(not_signed_in());
        };
        let hash = keys::token_hash(&token);
        let now = clock::now();
        let Some(session) = Box::pin(console::session(&app.store, &hash)).await? else {
            return Err(not_signed_in());
        };
        if !session.live(now) {
            return Err(not_signed_in());
        }
        let Ok(who) = Principal::parse(&session.principal) else {
            return Err(not_signed_in());
        };
        // Slide the idle expiry, at most once a minute per session.
        let stale = clock::parse(&session.last_seen)
            .is_none_or(|t| now - t > chrono::Duration::seconds(60));
        if stale {
            let idle =
                chrono::Duration::from_std(app.settings.console.session_idle).unwrap_or_default();
            let _ = app
                .store
                .write(move |ctx| {
                    Box::pin(async move {
                        let until = ctx.now + idle;
                        console::touch_session(ctx, &hash, until).await
                    })
                })
                .await;
        }
        Ok(Signed { who, session })
    }
}

/// A posted form's fields, read whatever the body's type says: a POST
/// with no form or an odd content type still reaches the CSRF check and
/// gets its 403, not a 415 that says nothing about why.
pub struct Posted(std::collections::HashMap<String, String>);

impl Posted {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn owned(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| ConsoleError::BadRequest(format!("the form could not be read: {e}")))?;
        Ok(Posted(
            url::form_urlencoded::parse(&body).into_owned().collect(),
        ))
    }
}

/// Opens a session for `who` inside a write job and audits the sign-in
/// (`console.signed_in`); returns the cookie's token.
pub async fn begin(
    ctx: &mut WriteCtx,
    app_settings: &crate::config::ConsoleSettings,
    who: &Principal,
    method: &'static str,
    scopes: &str,
    auth_time: DateTime<Utc>,
) -> crate::error::AppResult<String> {
    let token = random_token();
    let csrf = random_token();
    let hash = keys::token_hash(&token);
    let idle = chrono::Duration::from_std(app_settings.session_idle).unwrap_or_default();
    let max = chrono::Duration::from_std(app_settings.session_max).unwrap_or_default();
    let expires_at = ctx.now + max;
    console::create_session(
        ctx,
        &NewSession {
            token_hash: &hash,
            principal: who,
            method,
            auth_time,
            idle_expires: (ctx.now + idle).min(expires_at),
            expires_at,
            csrf_secret: &csrf,
            scopes,
        },
    )
    .await?;
    ctx.audit(
        who.as_str(),
        None,
        "console.signed_in",
        &json!({ "method": method, "auth_time": clock::fmt(auth_time) }),
    )
    .await?;
    Ok(token)
}

/// The `Set-Cookie` value that stores `token` (or, with `None`, clears it).
pub fn set_cookie(app: &App, token: Option<&str>) -> String {
    let secure = if app.console_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    match token {
        Some(t) => format!(
            "{COOKIE}={t}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            app.settings.console.session_max.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; countersign_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn tokens_are_32_random_bytes() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token());
    }
}
