//! A fake Microsoft on loopback for the Teams tests: OpenID metadata and a
//! JWKS (with `endorsements`), the identity platform's token endpoint, and
//! a Bot Connector that records every call and can answer 429 / 500 for a
//! while. Plus JWT minting with checked-in test keys, activity builders,
//! and a harness that starts Countersign pointed at all of it.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_with};

pub const APP_ID: &str = "6f1c2b9e-0000-4000-8000-000000000001";
pub const TENANT: &str = "tenant-contoso";
pub const CONVERSATION: &str = "19:approvals@thread.tacv2";
pub const ISSUER: &str = "https://api.botframework.com";
pub const GOOD_KID: &str = "bf-key-1";
pub const WEBCHAT_KID: &str = "webchat-key";
pub const PASSWORD: &str = "test-app-password";

pub struct TestKey {
    pub pem: String,
    pub encoding: EncodingKey,
    pub n: String,
    pub e: String,
}

fn load_key(pem: &str) -> TestKey {
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("test key parses");
    TestKey {
        pem: pem.to_string(),
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("test key loads"),
        n: URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
    }
}

/// The Bot Framework's signing key (endorsed for msteams).
pub static SIGNING: LazyLock<TestKey> =
    LazyLock::new(|| load_key(include_str!("fixtures/signing-key.pem")));
/// Someone else's key.
pub static OTHER: LazyLock<TestKey> =
    LazyLock::new(|| load_key(include_str!("fixtures/other-key.pem")));

pub fn jwk(kid: &str, key: &TestKey, endorsements: &[&str]) -> Value {
    json!({
        "kty": "RSA", "use": "sig", "kid": kid, "n": key.n, "e": key.e,
        "endorsements": endorsements,
    })
}

pub fn default_jwks() -> Value {
    json!({ "keys": [
        jwk(GOOD_KID, &SIGNING, &["msteams", "webchat"]),
        jwk(WEBCHAT_KID, &OTHER, &["webchat"]),
    ]})
}

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path with each segment percent-decoded.
    pub segments: Vec<String>,
    pub body: Value,
    pub raw_body: String,
    pub auth: Option<String>,
    pub status: u16,
    pub at: Instant,
}

impl Call {
    pub fn path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
    /// A card carried in an activity's attachments.
    pub fn card(&self) -> &Value {
        &self.body["attachments"][0]["content"]
    }
    pub fn is_post(&self) -> bool {
        self.method == "POST"
            && self.segments.len() == 4
            && self.segments[0] == "v3"
            && self.segments[3] == "activities"
    }
    pub fn is_update(&self) -> bool {
        self.method == "PUT" && self.segments.len() == 5 && self.segments[3] == "activities"
    }
    pub fn is_reply(&self) -> bool {
        self.method == "POST" && self.segments.len() == 5 && self.segments[3] == "activities"
    }
    pub fn is_member_lookup(&self) -> bool {
        self.method == "GET" && self.segments.len() == 5 && self.segments[3] == "members"
    }
    pub fn conversation(&self) -> &str {
        &self.segments[2]
    }
}

#[derive(Default)]
struct State {
    base: String,
    calls: Vec<Call>,
    /// Answers for the next activity posts, before they start succeeding.
    post_failures: VecDeque<(u16, Option<String>)>,
    members: HashMap<String, Value>,
    jwks: Value,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeBotFramework {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl FakeBotFramework {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            base: base.clone(),
            jwks: default_jwks(),
            ..Default::default()
        }));
        let s = state.clone();
        let router = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { answer(&s, method, uri, headers, body) }
            },
        );
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { base, state }
    }

    pub fn service_url(&self) -> String {
        format!("{}/", self.base)
    }

    /// A Teams user the member lookup knows: id `29:<name>`, AAD object
    /// id `aad-<name>`, e-mail `<name>@example.com`.
    pub fn add_member(&self, name: &str) {
        self.state.lock().unwrap().members.insert(
            format!("29:{name}"),
            json!({
                "id": format!("29:{name}"), "name": name, "aadObjectId": format!("aad-{name}"),
                "email": format!("{name}@example.com"),
                "userPrincipalName": format!("{name}@example.com"), "tenantId": TENANT,
            }),
        );
    }

    pub fn fail_next_posts(&self, answers: &[(u16, Option<&str>)]) {
        let mut s = self.state.lock().unwrap();
        for (status, retry_after) in answers {
            s.post_failures
                .push_back((*status, retry_after.map(str::to_string)));
        }
    }

    pub fn set_jwks(&self, jwks: Value) {
        self.state.lock().unwrap().jwks = jwks;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn connector_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.segments.first().map(String::as_str) == Some("v3"))
            .collect()
    }

    pub fn posts(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_post).collect()
    }

    pub fn updates(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_update).collect()
    }

    pub fn replies(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_reply).collect()
    }

    pub fn token_calls(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.segments == ["token"])
            .count()
    }

    /// Waits (bounded) until `ready` holds for the calls received so far.
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let calls = self.calls();
            if ready(&calls) {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; calls: {:#?}",
                calls
                    .iter()
                    .map(|c| (c.method.clone(), c.path(), c.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the successful post of a card and returns it.
    pub async fn wait_for_post(&self) -> Call {
        let calls = self
            .wait_for("a card to be posted", |c| {
                c.iter().any(|c| c.is_post() && c.status == 200)
            })
            .await;
        calls
            .into_iter()
            .find(|c| c.is_post() && c.status == 200)
            .unwrap()
    }
}

fn answer(
    state: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let segments: Vec<String> = uri
        .path()
        .trim_matches('/')
        .split('/')
        .map(|p| urlencoding::decode(p).unwrap().into_owned())
        .collect();
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (status, retry_after, reply): (u16, Option<String>, Value) = match (&method, seg.as_slice())
    {
        (&Method::GET, ["openid"]) => (
            200,
            None,
            json!({ "issuer": ISSUER, "jwks_uri": format!("{}/keys", s.base),
                    "id_token_signing_alg_values_supported": ["RS256"] }),
        ),
        (&Method::GET, ["keys"]) => (200, None, s.jwks.clone()),
        (&Method::POST, ["token"]) => {
            let ok = raw_body.contains("grant_type=client_credentials")
                && raw_body.contains(&format!("client_id={APP_ID}"))
                && raw_body.contains(&format!("client_secret={PASSWORD}"))
                && raw_body.contains("scope=https%3A%2F%2Fapi.botframework.com%2F.default");
            if ok {
                let n = s.calls.iter().filter(|c| c.segments == ["token"]).count();
                (
                    200,
                    None,
                    json!({ "token_type": "Bearer", "expires_in": 3600,
                            "access_token": format!("connector-token-{n}") }),
                )
            } else {
                (400, None, json!({ "error": "invalid_client" }))
            }
        }
        _ if seg.first() == Some(&"v3")
            && !auth
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer connector-token-")) =>
        {
            (401, None, json!({ "error": "no token" }))
        }
        (&Method::POST, ["v3", "conversations", _, "activities"]) => {
            match s.post_failures.pop_front() {
                Some((status, retry_after)) => (status, retry_after, json!({ "error": "busy" })),
                None => {
                    s.next_id += 1;
                    (
                        200,
                        None,
                        json!({ "id": format!("activity-{}", s.next_id) }),
                    )
                }
            }
        }
        (&Method::POST, ["v3", "conversations", _, "activities", _]) => {
            s.next_id += 1;
            (200, None, json!({ "id": format!("reply-{}", s.next_id) }))
        }
        (&Method::PUT, ["v3", "conversations", _, "activities", id]) => {
            (200, None, json!({ "id": id }))
        }
        (&Method::GET, ["v3", "conversations", _, "members"]) => {
            let mut all: Vec<Value> = s.members.values().cloned().collect();
            all.sort_by_key(|m| m["id"].to_string());
            (200, None, json!(all))
        }
        (&Method::POST, ["v3", "conversations"]) => {
            let member = parsed["members"][0]["id"].as_str().unwrap_or("?");
            (200, None, json!({ "id": format!("dm-{member}") }))
        }
        (&Method::GET, ["v3", "conversations", _, "members", user]) => match s.members.get(*user) {
            Some(m) => (200, None, m.clone()),
            None => (
                404,
                None,
                json!({ "error": { "code": "MemberNotFoundInConversation" } }),
            ),
        },
        _ => (404, None, json!({ "error": "no such route in the fake" })),
    };
    s.calls.push(Call {
        method: method.to_string(),
        segments,
        body: parsed,
        raw_body,
        auth,
        status,
        at: Instant::now(),
    });
    let mut res = (StatusCode::from_u16(status).unwrap(), axum::Json(reply)).into_response();
    if let Some(r) = retry_after {
        res.headers_mut().insert("retry-after", r.parse().unwrap());
    }
    res
}

/// Countersign started against a fresh fake Bot Framework.
pub struct TeamsApp {
    pub app: TestApp,
    pub bf: FakeBotFramework,
}

pub async fn spawn_teams() -> TeamsApp {
    spawn_teams_with(None, |_| {}).await
}

pub async fn spawn_teams_with_policy(policy: &str) -> TeamsApp {
    spawn_teams_with(Some(policy), |_| {}).await
}

pub async fn spawn_teams_with(
    policy: Option<&str>,
    tweak: impl FnOnce(&mut countersign::config::Settings),
) -> TeamsApp {
    let bf = FakeBotFramework::start().await;
    for name in ["bob", "dave", "carol", "alice", "olivia", "erin"] {
        bf.add_member(name);
    }
    let base = bf.base.clone();
    let policy = policy.map(str::to_string);
    let app = spawn_with(move |s| {
        if let Some(p) = policy {
            let path = std::path::PathBuf::from(&s.db).with_file_name("policy.yaml");
            std::fs::write(&path, p).unwrap();
            s.policy = Some(path);
        }
        let t = &mut s.teams;
        t.app_id = Some(APP_ID.into());
        t.app_password = Some(countersign::config::Secret::new(PASSWORD));
        t.tenant = Some(TENANT.into());
        t.openid_metadata_url = format!("{base}/openid");
        t.token_url = Some(format!("{base}/token"));
        t.service_url = Some(format!("{base}/"));
        t.conversation = Some(CONVERSATION.into());
        tweak(s);
    })
    .await;
    TeamsApp { app, bf }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a good token for `service_url`.
pub fn claims(service_url: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": APP_ID, "serviceurl": service_url,
        "nbf": now() - 60, "iat": now() - 60, "exp": now() + 3600,
    })
}

pub fn mint(claims: &Value, kid: Option<&str>, key: &TestKey) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

pub fn mint_hs256(claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(GOOD_KID.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// An unsigned token (`alg: none`).
pub fn mint_none(claims: &Value) -> String {
    let header = json!({ "alg": "none", "typ": "JWT", "kid": GOOD_KID });
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub fn account(name: &str) -> Value {
    json!({ "id": format!("29:{name}"), "name": name, "aadObjectId": format!("aad-{name}") })
}

pub fn bot_account() -> Value {
    json!({ "id": format!("28:{APP_ID}"), "name": "Countersign" })
}

impl TeamsApp {
    pub fn token(&self) -> String {
        mint(&claims(&self.bf.service_url()), Some(GOOD_KID), &SIGNING)
    }

    fn envelope(&self, kind: &str, from: &str) -> Value {
        json!({
            "type": kind,
            "id": format!("f:{}", uuid::Uuid::now_v7()),
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "channelId": "msteams",
            "serviceUrl": self.bf.service_url(),
            "from": account(from),
            "recipient": bot_account(),
            "conversation": { "id": CONVERSATION, "conversationType": "channel", "tenantId": TENANT },
            "channelData": { "tenant": { "id": TENANT }, "channel": { "id": CONVERSATION } },
        })
    }

    /// An Approve or Deny click on a request's card.
    pub fn click_activity(
        &self,
        who: &str,
        verb: &str,
        request: &Value,
        reason: Option<&str>,
    ) -> Value {
        let mut data = json!({
            "request_id": request["id"], "payload_sha256": request["payload_sha256"],
        });
        if let Some(r) = reason {
            data["reason"] = json!(r);
        }
        let mut a = self.envelope("invoke", who);
        a["name"] = json!("adaptiveCard/action");
        a["value"] = json!({
            "action": { "type": "Action.Execute", "verb": verb, "data": data },
            "trigger": "manual",
        });
        a
    }

    /// A message to the bot, @mentioning it first as in a channel.
    pub fn message_activity(&self, who: &str, text: &str, mentions: &[&str]) -> Value {
        let mut a = self.envelope("message", who);
        let mut entities = vec![json!({
            "type": "mention", "text": "<at>Countersign</at>", "mentioned": bot_account(),
        })];
        let mut body = format!("<at>Countersign</at> {text}");
        for m in mentions {
            let tag = format!("<at>{m}</at>");
            body = body.replacen(&format!("@{m}"), &tag, 1);
            entities.push(json!({ "type": "mention", "text": tag, "mentioned": account(m) }));
        }
        a["text"] = json!(body);
        a["entities"] = json!(entities);
        a
    }

    pub fn bot_added_activity(&self, conversation: &str, team: Option<&str>) -> Value {
        let mut a = self.envelope("conversationUpdate", "olivia");
        a["conversation"]["id"] = json!(conversation);
        a["membersAdded"] = json!([bot_account()]);
        if let Some(t) = team {
            a["channelData"]["team"] = json!({ "id": conversation, "name": t });
        }
        a
    }

    pub async fn send_with(
        &self,
        activity: &Value,
        authorization: Option<String>,
    ) -> reqwest::Response {
        let mut req = self
            .app
            .client
            .post(self.app.url("/teams/messages"))
            .json(activity);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap()
    }

    pub async fn send(&self, activity: &Value) -> reqwest::Response {
        self.send_with(activity, Some(format!("Bearer {}", self.token())))
            .await
    }

    /// Clicks and returns the card of the invoke response (checked to be
    /// a well-formed invoke response with a valid 1.5 card).
    pub async fn click(
        &self,
        who: &str,
        verb: &str,
        request: &Value,
        reason: Option<&str>,
    ) -> Value {
        let res = self
            .send(&self.click_activity(who, verb, request, reason))
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["statusCode"], 200, "{body}");
        assert_eq!(body["type"], "application/vnd.microsoft.card.adaptive");
        let card = body["value"].clone();
        countersign::channels::teams::card::check_adaptive_card(&card)
            .unwrap_or_else(|e| panic!("invalid card: {e}\n{card:#}"));
        card
    }

    /// Creates the usual request as the agent and waits for its card.
    pub async fn create_and_post(&self) -> (String, Value, Call) {
        let agent = self.app.agent().await;
        let request = self.app.create_default(&agent).await;
        let post = self.bf.wait_for_post().await;
        self.wait_until_posted(request["id"].as_str().unwrap())
            .await;
        (agent, request, post)
    }

    /// Waits until the outbox has recorded the card's delivery.
    pub async fn wait_until_posted(&self, id: &str) {
        eventually("the post to be recorded", || async {
            self.app
                .audit_kinds(id)
                .await
                .contains(&"teams.posted".to_string())
        })
        .await;
    }

    /// Snapshot of what a refused activity must not change.
    pub async fn footprint(&self) -> (i64, i64, i64, usize) {
        (
            self.app.count("audit_events").await,
            self.app.count("decisions").await,
            self.app.count("teams_conversations").await,
            self.bf.connector_calls().len(),
        )
    }
}

/// All text on a card, for assertions.
pub fn card_text(card: &Value) -> String {
    let mut out = String::new();
    collect_text(card, &mut out);
    out
}

fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if matches!(k.as_str(), "text" | "title" | "value")
                    && let Some(s) = v.as_str()
                {
                    out.push_str(s);
                    out.push('\n');
                }
                collect_text(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        _ => {}
    }
}

/// The texts Teams renders as markdown: every TextBlock's text and every
/// fact's title and value, one per line.
pub fn markdown_texts(card: &Value) -> String {
    let mut out = String::new();
    walk_kinds(card, &mut |kind, obj| {
        if kind == "TextBlock"
            && let Some(t) = obj.get("text").and_then(Value::as_str)
        {
            out.push_str(t);
            out.push('\n');
        }
        if kind == "FactSet" {
            for f in obj
                .get("facts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for k in ["title", "value"] {
                    if let Some(t) = f.get(k).and_then(Value::as_str) {
                        out.push_str(t);
                        out.push('\n');
                    }
                }
            }
        }
    });
    out
}

/// The texts Teams shows as plain text: every TextRun's, one per line.
pub fn text_runs(card: &Value) -> String {
    let mut out = String::new();
    walk_kinds(card, &mut |kind, obj| {
        if kind == "TextRun"
            && let Some(t) = obj.get("text").and_then(Value::as_str)
        {
            out.push_str(t);
            out.push('\n');
        }
    });
    out
}

fn walk_kinds(v: &Value, f: &mut dyn FnMut(&str, &serde_json::Map<String, Value>)) {
    match v {
        Value::Object(m) => {
            if let Some(kind) = m.get("type").and_then(Value::as_str) {
                f(kind, m);
            }
            m.values().for_each(|v| walk_kinds(v, f));
        }
        Value::Array(items) => items.iter().for_each(|i| walk_kinds(i, f)),
        _ => {}
    }
}

/// The verbs of a card's Action.Execute buttons, nested ones included.
pub fn verbs(card: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_verbs(card, &mut out);
    out
}

fn collect_verbs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.get("type").and_then(Value::as_str) == Some("Action.Execute")
                && let Some(verb) = m.get("verb").and_then(Value::as_str)
            {
                out.push(verb.to_string());
            }
            m.values().for_each(|v| collect_verbs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|i| collect_verbs(i, out)),
        _ => {}
    }
}

/// Waits (bounded) until `check` passes.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
