//! Sign-in with the organisation's OpenID Connect provider
//! (`COUNTERSIGN_OIDC_ISSUER`, `_CLIENT_ID`, `_CLIENT_SECRET`): the
//! authorization code flow with PKCE, a nonce and a state.
//!
//! `GET /ui/login/oidc` discovers the provider, keeps the state, nonce,
//! PKCE verifier and `next` in a short-lived cookie (HttpOnly,
//! `SameSite=Lax`, since the provider's redirect back is a cross-site
//! navigation; nothing is kept on the server, so any replica can finish
//! the flow) and sends the browser to the provider. The callback checks
//! the state against the cookie (constant time), redeems the code with the
//! verifier, verifies the ID token (signature from the provider's JWKS,
//! issuer, audience, expiry, nonce) and maps its e-mail claim to
//! `user:<email>`, unless the provider says `email_verified: false`.
//! `?max_age=N` asks the provider for a sign-in no older than N seconds
//! (the step-up re-login).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::{ConsoleError, ConsoleResult};
use super::{html, safe_next, session, templates};
use crate::domain::Principal;
use crate::service::App;

const FLOW_COOKIE: &str = "countersign_oidc";
/// How long the browser has to come back from the provider.
const FLOW_SECS: u64 = 600;

#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// The provider's endpoints, called with the service's HTTP client, no
/// redirects followed (a token endpoint that redirects is not followed).
async fn call(
    client: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let res = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(format!("{e:#}")))?;
    let mut out = http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        out = out.header(k, v);
    }
    let bytes = res.bytes().await.map_err(|e| HttpError(format!("{e:#}")))?;
    out.body(bytes.to_vec())
        .map_err(|e| HttpError(e.to_string()))
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ConsoleError {
    tracing::warn!(error = %e, "OIDC: {what}");
    ConsoleError::App(crate::error::AppError::Unavailable(format!(
        "Signing in with your organisation's account failed ({what}); try again, or use a link from chat."
    )))
}

macro_rules! oidc_client {
    ($app:expr) => {{
        let Some(cfg) = $app.settings.console.oidc.clone() else {
            return Err(ConsoleError::NotFound(
                "Sign-in with an identity provider is not configured here.".into(),
            ));
        };
        let http = http_client();
        let fetch = move |r| call(http.clone(), r);
        let issuer =
            IssuerUrl::new(cfg.issuer.clone()).map_err(|e| unavailable("the issuer URL", e))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &fetch)
            .await
            .map_err(|e| unavailable("discovery", e))?;
        let redirect = RedirectUrl::new(format!("{}/ui/login/oidc/callback", $app.console_url()))
            .map_err(|e| unavailable("the redirect URL", e))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(cfg.client_id.clone()),
            Some(ClientSecret::new(cfg.client_secret.expose().to_string())),
        )
        .set_redirect_uri(redirect);
        (client, fetch)
    }};
}

#[derive(Deserialize)]
pub struct Start {
    next: Option<String>,
    max_age: Option<u64>,
}

/// `GET /ui/login/oidc`: off to the provider.
pub async fn start(State(app): State<App>, Query(q): Query<Start>) -> ConsoleResult<Response> {
    let (client, _fetch) = oidc_client!(app);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge);
    if let Some(secs) = q.max_age {
        auth = auth.set_max_age(Duration::from_secs(secs));
    }
    let (url, state, nonce) = auth.url();
    let next = safe_next(q.next.as_deref());
    // base64url values and a console path: no ';' or ',' to escape.
    let flow = format!(
        "{}.{}.{}.{}",
        state.secret(),
        nonce.secret(),
        verifier.secret(),
        urlencoding::encode(&next)
    );
    let secure = if app.console_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{FLOW_COOKIE}={flow}; Path=/ui/login/oidc; HttpOnly; SameSite=Lax; Max-Age={FLOW_SECS}{secure}"
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response())
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /ui/login/oidc/callback`: the provider sends the browser back here.
pub async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> ConsoleResult<Response> {
    if let Some(e) = q.error {
        return Err(ConsoleError::Forbidden(format!(
            "Your identity provider did not sign you in ({}).",
            crate::channels::text::visible(&e, false)
        )));
    }
    let flow = session::cookie(&headers, FLOW_COOKIE).ok_or_else(|| {
        ConsoleError::BadRequest(
            "This sign-in was not started here (or took too long): start again.".into(),
        )
    })?;
    let parts: Vec<&str> = flow.splitn(4, '.').collect();
    let [state, nonce, verifier, next] = parts[..] else {
        return Err(ConsoleError::BadRequest(
            "This sign-in's state is damaged: start again.".into(),
        ));
    };
    let given = q.state.unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(state.as_bytes())) {
        return Err(ConsoleError::Forbidden(
            "This sign-in's state does not match the one started in this browser: start again."
                .into(),
        ));
    }
    let code = q
        .code
        .ok_or_else(|| ConsoleError::BadRequest("The provider sent no code.".into()))?;
    let (client, fetch) = oidc_client!(app);
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| unavailable("the token endpoint", e))?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
        .request_async(&fetch)
        .await
        .map_err(|e| unavailable("redeeming the code", e))?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| unavailable("the token response", "no ID token"))?;
    let claims = id_token
        .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_string()))
        .map_err(|e| {
            tracing::warn!(error = %e, "OIDC: an ID token was refused");
            ConsoleError::Forbidden(
                "Your identity provider's answer did not verify; nothing was signed in.".into(),
            )
        })?;
    if claims.email_verified() == Some(false) {
        return Err(ConsoleError::Forbidden(
            "Your identity provider says your e-mail address is not verified, so it cannot say who you are here.".into(),
        ));
    }
    let who = claims
        .email()
        .and_then(|e| Principal::parse(&format!("user:{}", e.as_str())).ok())
        .ok_or_else(|| {
            ConsoleError::Forbidden("Your identity provider sent no usable e-mail address.".into())
        })?;
    let auth_time = claims.auth_time();
    let settings = app.settings.console.clone();
    let token = app
        .store
        .write(move |ctx| {
            Box::pin(async move {
                let at = auth_time.filter(|t| *t <= ctx.now).unwrap_or(ctx.now);
                session::begin(ctx, &settings, &who, "oidc", "", at).await
            })
        })
        .await?;
    let next = safe_next(urlencoding::decode(next).ok().as_deref());
    let clear = format!("{FLOW_COOKIE}=; Path=/ui/login/oidc; HttpOnly; SameSite=Lax; Max-Age=0");
    // A page of our own moves on to `next`: a redirect straight out of the
    // provider's cross-site navigation would not carry the SameSite=Strict
    // session cookie.
    let page = templates::render(
        "moving_on.html",
        context! { title => "Signed in", next => next, who => () },
    );
    let mut res = html(page);
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(&app, Some(&token))
            .parse()
            .expect("cookie"),
    );
    h.append(header::SET_COOKIE, clear.parse().expect("cookie"));
    Ok(res)
}
