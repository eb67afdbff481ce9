//! A fake OpenID Connect provider on loopback: discovery, a JWKS, an
//! authorize endpoint that signs the person in at once and redirects
//! back with a code, and a token endpoint that checks the client's
//! secret and the PKCE verifier and issues an RS256-signed ID token (the
//! Teams suite's checked-in test key).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "countersign-console";
pub const CLIENT_SECRET: &str = "oidc-client-secret-never-logged";
const KEY_PEM: &str = include_str!("../teams/fixtures/signing-key.pem");
const KID: &str = "fake-oidc-key";

/// Who the provider says is signing in.
#[derive(Clone, Debug)]
pub struct Person {
    pub email: String,
    pub email_verified: Option<bool>,
    /// How long ago they last entered their password (unless `max_age` forces a fresh sign-in).
    pub signed_in_secs_ago: i64,
}

#[derive(Default)]
struct Inner {
    base: String,
    person: Option<Person>,
    /// code → (nonce, PKCE challenge, auth_time)
    codes: HashMap<String, (String, String, i64)>,
    /// Every authorize request's query.
    authorizations: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
pub struct FakeOidc {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeOidc {
    pub async fn start() -> FakeOidc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner {
            base: base.clone(),
            ..Default::default()
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(inner.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FakeOidc { base, inner }
    }

    pub fn sign_in_as(&self, person: Person) {
        self.inner.lock().unwrap().person = Some(person);
    }

    pub fn authorizations(&self) -> Vec<HashMap<String, String>> {
        self.inner.lock().unwrap().authorizations.clone()
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn discovery(State(s): Shared) -> Json<Value> {
    let base = s.lock().unwrap().base.clone();
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks() -> Json<Value> {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(KEY_PEM).unwrap();
    Json(json!({ "keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    }]}))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn authorize(State(s): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut s = s.lock().unwrap();
    s.authorizations.push(q.clone());
    let Some(person) = s.person.clone() else {
        return (
            StatusCode::FORBIDDEN,
            "nobody is signed in at the fake provider",
        )
            .into_response();
    };
    let ago = match q.get("max_age").and_then(|m| m.parse::<i64>().ok()) {
        // Asked for a recent sign-in: the person signs in again now.
        Some(max) if person.signed_in_secs_ago > max => 0,
        _ => person.signed_in_secs_ago,
    };
    let code = format!("code-{}", s.codes.len() + 1);
    s.codes.insert(
        code.clone(),
        (
            q.get("nonce").cloned().unwrap_or_default(),
            q.get("code_challenge").cloned().unwrap_or_default(),
            now() - ago,
        ),
    );
    let state = q.get("state").cloned().unwrap_or_default();
    let to = format!(
        "{}?code={code}&state={}",
        q.get("redirect_uri").cloned().unwrap_or_default(),
        urlencoding::encode(&state)
    );
    Redirect::to(&to).into_response()
}

async fn token(
    State(s): Shared,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let mut s = s.lock().unwrap();
    let Some((nonce, challenge, auth_time)) = f.get("code").and_then(|c| s.codes.remove(c)) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_grant" })),
        )
            .into_response();
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_grant", "error_description": "PKCE" })),
        )
            .into_response();
    }
    let person = s.person.clone().unwrap();
    let mut claims = json!({
        "iss": s.base, "sub": format!("sub-{}", person.email), "aud": CLIENT_ID,
        "iat": now(), "exp": now() + 300, "nonce": nonce, "auth_time": auth_time,
        "email": person.email,
    });
    if let Some(v) = person.email_verified {
        claims["email_verified"] = json!(v);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    let id_token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(KEY_PEM.as_bytes()).unwrap(),
    )
    .unwrap();
    Json(json!({ "access_token": "fake-access-token", "token_type": "Bearer", "expires_in": 300, "id_token": id_token }))
        .into_response()
}
