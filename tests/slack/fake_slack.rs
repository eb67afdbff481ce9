//! A fake Slack on loopback: the Web API methods Countersign calls
//! (`/api/<method>`, `apps.connections.open` handing out a fake Socket
//! Mode server's URL when given one) and `response_url`s
//! (`/response/<name>`). It records
//! every call, answers like Slack does, and can be told to fail the next
//! calls of a method (429 with Retry-After, 500, an `ok:false` error) or to
//! answer slowly.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use bytes::Bytes;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// JSON body, form fields or query parameters, as a JSON object.
    pub body: Value,
    pub authorization: Option<String>,
    /// When the call arrived.
    pub at: Instant,
    /// What the fake answered.
    pub status: u16,
    pub ok: bool,
}

#[derive(Debug, Clone)]
pub enum Failure {
    RateLimited { retry_after_secs: u64 },
    ServerError,
    SlackError(&'static str),
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<Call>>,
    failures: Mutex<HashMap<String, VecDeque<Failure>>>,
    delays: Mutex<HashMap<String, Duration>>,
    /// Slack user id → profile e-mail (None: no e-mail on the profile).
    users: Mutex<HashMap<String, Option<String>>>,
    /// What `apps.connections.open` hands out: a fake Socket Mode server's
    /// URL (`fake_socket`); without one it answers as for an app that has
    /// Socket Mode off.
    socket_url: Mutex<Option<String>>,
    ts: AtomicU64,
}

#[derive(Clone)]
pub struct FakeSlack {
    pub base: String,
    inner: Arc<Inner>,
}

impl FakeSlack {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let router = Router::new()
            .route("/api/{method}", any(api))
            .route("/response/{name}", post(response_url))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            inner,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    pub fn response_url(&self, name: &str) -> String {
        format!("{}/response/{name}", self.base)
    }

    pub fn user(&self, id: &str, email: Option<&str>) {
        self.inner
            .users
            .lock()
            .unwrap()
            .insert(id.into(), email.map(Into::into));
    }

    /// `apps.connections.open` answers `url` from now on.
    pub fn serve_socket_mode(&self, url: String) {
        *self.inner.socket_url.lock().unwrap() = Some(url);
    }

    /// The next calls of `method` fail, in this order.
    pub fn fail(&self, method: &str, failures: impl IntoIterator<Item = Failure>) {
        self.inner
            .failures
            .lock()
            .unwrap()
            .entry(method.into())
            .or_default()
            .extend(failures);
    }

    pub fn delay(&self, method: &str, by: Duration) {
        self.inner.delays.lock().unwrap().insert(method.into(), by);
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.inner
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    pub fn successes(&self, method: &str) -> Vec<Call> {
        self.calls(method).into_iter().filter(|c| c.ok).collect()
    }

    /// Waits (up to 10 s) until `method` has succeeded `n` times.
    pub async fn wait_for(&self, method: &str, n: usize) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let calls = self.successes(method);
            if calls.len() >= n {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {n} successful {method} call(s); got {}: {:#?}",
                calls.len(),
                self.calls(method)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn record(&self, call: Call) {
        self.inner.calls.lock().unwrap().push(call);
    }
}

fn parse_body(headers: &HeaderMap, query: Option<String>, body: &Bytes) -> Value {
    let mut fields = serde_json::Map::new();
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            fields.insert(k.into_owned(), json!(v.into_owned()));
        }
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.starts_with("application/json") {
        if let Ok(Value::Object(m)) = serde_json::from_slice(body) {
            fields.extend(m);
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(body) {
            fields.insert(k.into_owned(), json!(v.into_owned()));
        }
    }
    Value::Object(fields)
}

async fn api(
    State(inner): State<Arc<Inner>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let fake = FakeSlack {
        base: String::new(),
        inner: inner.clone(),
    };
    let body = parse_body(&headers, query, &body);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(Into::into);
    let delay = inner.delays.lock().unwrap().get(&method).copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let failure = inner
        .failures
        .lock()
        .unwrap()
        .get_mut(&method)
        .and_then(VecDeque::pop_front);
    let mut call = Call {
        method: method.clone(),
        body: body.clone(),
        authorization,
        at,
        status: 200,
        ok: false,
    };
    let response = match failure {
        Some(Failure::RateLimited { retry_after_secs }) => {
            call.status = 429;
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", retry_after_secs.to_string()),
                    ("content-type", "application/json".into()),
                ],
                json!({ "ok": false, "error": "ratelimited" }).to_string(),
            )
                .into_response()
        }
        Some(Failure::ServerError) => {
            call.status = 500;
            (StatusCode::INTERNAL_SERVER_ERROR, "upstream trouble").into_response()
        }
        Some(Failure::SlackError(code)) => json_ok(json!({ "ok": false, "error": code })),
        None => {
            let answer = success(&inner, &method, &body);
            call.ok = answer["ok"] == true;
            json_ok(answer)
        }
    };
    fake.record(call);
    response
}

fn success(inner: &Inner, method: &str, body: &Value) -> Value {
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    match method {
        "chat.postMessage" => {
            let n = inner.ts.fetch_add(1, Ordering::SeqCst) + 1;
            let ts = format!("1700000000.{n:06}");
            json!({ "ok": true, "channel": s("channel"), "ts": ts,
                    "message": { "ts": ts, "type": "message", "text": s("text") } })
        }
        "chat.update" => json!({ "ok": true, "channel": s("channel"), "ts": s("ts"),
                                 "text": s("text"), "message": { "text": s("text") } }),
        "chat.postEphemeral" => json!({ "ok": true, "message_ts": "1700000000.999999" }),
        "views.open" => json!({ "ok": true, "view": { "id": "V1", "type": "modal" } }),
        "users.info" => match inner.users.lock().unwrap().get(s("user")) {
            Some(email) => {
                let mut profile = json!({ "real_name": "Someone" });
                if let Some(e) = email {
                    profile["email"] = json!(e);
                }
                json!({ "ok": true, "user": { "id": s("user"), "team_id": "T1", "is_bot": false,
                                              "deleted": false, "profile": profile } })
            }
            None => json!({ "ok": false, "error": "user_not_found" }),
        },
        "users.lookupByEmail" => {
            let users = inner.users.lock().unwrap();
            let found = users
                .iter()
                .find(|(_, email)| email.as_deref() == Some(s("email")));
            match found {
                Some((id, _)) => json!({ "ok": true, "user": { "id": id, "team_id": "T1" } }),
                None => json!({ "ok": false, "error": "users_not_found" }),
            }
        }
        "apps.connections.open" => match inner.socket_url.lock().unwrap().clone() {
            Some(url) => json!({ "ok": true, "url": url }),
            None => json!({ "ok": false, "error": "socket_mode_not_enabled" }),
        },
        _ => json!({ "ok": false, "error": "unknown_method" }),
    }
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

/// Slack answers a response_url with a plain `ok`.
async fn response_url(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        method: format!("response_url:{name}"),
        body: parse_body(&headers, None, &body),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(Into::into),
        at: Instant::now(),
        status: 200,
        ok: true,
    };
    inner.calls.lock().unwrap().push(call);
    (StatusCode::OK, [("content-type", "text/plain")], "ok").into_response()
}
