//! The HTTP client the agent-side commands share (`hook`, `request`,
//! `exec`, `permit verify`): where the service is (`COUNTERSIGN_URL`), the
//! key to speak with (`COUNTERSIGN_TOKEN`), timeouts, and one error type.
//!
//! Every way a call can go wrong (unreachable, refused key, timeout, an
//! answer that is not what the API documents) is a [`Failure`] carrying a
//! sentence for a person, and every caller treats a failure as "not
//! approved": the gate fails closed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::domain::Status;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Why the service gave no usable answer. Callers treat it as "not approved".
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

fn fail(s: impl Into<String>) -> Failure {
    Failure(s.into())
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    /// The longest `?wait=` the server accepts; learnt from its 400 if lower.
    max_wait: std::cell::Cell<u64>,
}

impl Client {
    /// From `COUNTERSIGN_URL` (default `http://127.0.0.1:8080`) and
    /// `COUNTERSIGN_TOKEN`.
    pub fn from_env() -> Result<Self, Failure> {
        let base = std::env::var("COUNTERSIGN_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.into());
        let token = std::env::var("COUNTERSIGN_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("COUNTERSIGN_TOKEN is not set: give the command an API key"))?;
        Self::new(&base, &token)
    }

    pub fn new(base: &str, token: &str) -> Result<Self, Failure> {
        let url = url::Url::parse(base)
            .map_err(|e| fail(format!("COUNTERSIGN_URL '{base}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(format!(
                "COUNTERSIGN_URL '{base}' must be an http or https URL"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A redirect could carry the key elsewhere; the API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("countersign-cli/", env!("CARGO_PKG_VERSION")));
        if url.scheme() == "http" {
            // Loading and parsing the platform's CA store costs milliseconds
            // per process, and a hook is one process per tool call; a plain
            // HTTP base never needs it (and no redirect can lead to HTTPS).
            builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
        }
        let http = builder
            .build()
            .map_err(|e| fail(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
            max_wait: std::cell::Cell::new(60),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
        what: &str,
    ) -> Result<(u16, Value), Failure> {
        let res = req
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    format!("{e}")
                };
                fail(format!("Countersign at {} {why} ({what})", self.base))
            })?;
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|e| {
            fail(format!(
                "Countersign at {} broke off its answer ({what}): {e}",
                self.base
            ))
        })?;
        let value: Value = serde_json::from_slice(&body).map_err(|_| {
            fail(format!(
                "Countersign at {} answered {what} with HTTP {status} and a body that is not JSON",
                self.base
            ))
        })?;
        Ok((status, value))
    }

    /// Turns a non-2xx answer into a sentence: the problem's `detail`.
    fn refused(&self, what: &str, status: u16, body: &Value) -> Failure {
        let detail = body
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("no detail given");
        let hint = match status {
            401 => " (is COUNTERSIGN_TOKEN a valid, unrevoked key?)",
            403 => " (does the key have the scope for this?)",
            _ => "",
        };
        fail(format!(
            "Countersign refused {what}: HTTP {status}: {detail}{hint}"
        ))
    }

    /// `POST /v1/approvals`; the created (201) or replayed (200) request.
    pub async fn create(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value, Failure> {
        let mut req = self
            .http
            .post(format!("{}/v1/approvals", self.base))
            .json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let what = "the approval request";
        let (status, value) = self.call(req, Duration::from_secs(30), what).await?;
        if status != 200 && status != 201 {
            return Err(self.refused(what, status, &value));
        }
        approval(value, what)
    }

    /// Waits until `request` is final or `deadline` passes, across as many
    /// long-polls as it takes; returns the request as it then stands.
    pub async fn wait_final(
        &self,
        mut request: Value,
        deadline: tokio::time::Instant,
    ) -> Result<Value, Failure> {
        let id = request["id"].as_str().unwrap_or_default().to_string();
        let mut transient = 0;
        loop {
            if status_of(&request)?.is_final() {
                return Ok(request);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = left.as_secs().min(self.max_wait.get());
            if wait == 0 {
                return Ok(request);
            }
            let req = self
                .http
                .get(format!("{}/v1/approvals/{id}?wait={wait}", self.base));
            let what = "waiting for the decision";
            match self.call(req, Duration::from_secs(wait + 15), what).await {
                Ok((200, value)) => {
                    request = approval(value, what)?;
                    transient = 0;
                }
                Ok((400, value)) if self.learn_max_wait(&value) => {}
                // A restart or a blip while waiting minutes is not a
                // reason to give up; three in a row are.
                Ok((502..=504, _)) | Err(_) if transient < 3 => {
                    transient += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok((status, value)) => return Err(self.refused(what, status, &value)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads "wait may be at most N seconds" from a 400 and remembers N.
    fn learn_max_wait(&self, body: &Value) -> bool {
        let detail = body["detail"].as_str().unwrap_or_default();
        let n = detail
            .strip_prefix("wait may be at most ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        match n {
            Some(n) if n < self.max_wait.get() => {
                self.max_wait.set(n.max(1));
                true
            }
            _ => false,
        }
    }

    /// `POST /v1/approvals/{id}/cancel`, best effort: the caller is giving up.
    pub async fn cancel(&self, id: &str) {
        let req = self
            .http
            .post(format!("{}/v1/approvals/{id}/cancel", self.base));
        let _ = self.call(req, Duration::from_secs(5), "cancel").await;
    }

    /// `GET /v1/approvals/{id}/permit`.
    pub async fn permit(&self, id: &str) -> Result<String, Failure> {
        let req = self
            .http
            .get(format!("{}/v1/approvals/{id}/permit", self.base));
        let what = "the permit";
        let (status, value) = self.call(req, Duration::from_secs(15), what).await?;
        if status != 200 {
            return Err(self.refused(what, status, &value));
        }
        value["permit"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| fail("Countersign's permit answer has no \"permit\" string"))
    }

    /// `POST /v1/permits/{jti}/redeem`.
    pub async fn redeem(&self, jti: &str, permit: &str) -> Result<Value, Failure> {
        let req = self
            .http
            .post(format!("{}/v1/permits/{jti}/redeem", self.base))
            .json(&json!({ "permit": permit }));
        let what = "redeeming the permit";
        let (status, value) = self.call(req, Duration::from_secs(15), what).await?;
        if status != 200 {
            return Err(self.refused(what, status, &value));
        }
        Ok(value)
    }

    /// `GET /.well-known/jwks.json` of this service.
    pub async fn jwks(&self) -> Result<Value, Failure> {
        fetch_jwks(&self.http, &format!("{}/.well-known/jwks.json", self.base)).await
    }
}

/// Fetches a JWKS document (no key is sent: it is public).
pub async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Value, Failure> {
    let res = http
        .get(url)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| fail(format!("cannot fetch the JWKS at {url}: {e}")))?;
    let status = res.status();
    if !status.is_success() {
        return Err(fail(format!("the JWKS at {url} answered HTTP {status}")));
    }
    res.json()
        .await
        .map_err(|_| fail(format!("the JWKS at {url} is not JSON")))
}

/// Checks that an answer looks like a request: an object with an `id` and
/// a known `status`. Anything else is a malformed answer.
fn approval(value: Value, what: &str) -> Result<Value, Failure> {
    if value.get("id").and_then(Value::as_str).is_none() {
        return Err(fail(format!(
            "Countersign's answer to {what} is not an approval request (no id)"
        )));
    }
    status_of(&value)?;
    Ok(value)
}

/// The `status` of a request as the API shows it.
pub fn status_of(request: &Value) -> Result<Status, Failure> {
    request
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("Countersign's answer has no status"))
        .and_then(|s| Status::parse(s).map_err(fail))
}
