//! Test harness: each test gets a fresh SQLite file in its own temporary
//! directory and the real application on a loopback port, and talks to it
//! over HTTP like any client would.
//!
//! With `COUNTERSIGN_TEST_BACKEND=postgres` (and
//! `COUNTERSIGN_TEST_POSTGRES_URL` naming a server, as `.ci/run` sets both
//! for its second pass) every app runs on a fresh PostgreSQL database
//! instead, so the same black-box suites prove both backends. The few
//! tests that edit the SQLite file on purpose (tampering behind the
//! service) skip there with a note; PostgreSQL has its own in
//! tests/postgres.

#![allow(dead_code)]

#[path = "../support/postgres.rs"]
pub mod postgres_support;

use std::net::SocketAddr;
use std::path::PathBuf;

use countersign::config::{Overrides, Secret, Settings};
use countersign::domain::Principal;
use countersign::service::App;
use countersign::store::keys::{self, NewKey, parse_scopes};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub app: App,
    pub dir: tempfile::TempDir,
    /// The SQLite file (on PostgreSQL: where it would be; see `db_url`).
    pub db: PathBuf,
    /// The `db` setting the app runs on: the file, or a PostgreSQL URL.
    pub db_url: String,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

pub fn settings_in(dir: &std::path::Path) -> Settings {
    let mut s = Settings::load(None, |_| None, &Overrides::default()).expect("default settings");
    let db = dir.join("countersign.db");
    s.db = db.display().to_string();
    s.signing_key = dir.join("audit-key.pem");
    s.permit_key = dir.join("permit-key.pem");
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.webhook_secret = Some(Secret::new("test-webhook-secret"));
    // Test receivers listen on loopback, which only an explicit entry admits.
    s.webhook_destinations =
        countersign::net::egress::Destinations::allowlist("127.0.0.1").unwrap();
    s.outbox.retry_base = std::time::Duration::from_millis(50);
    s.outbox.retry_max = std::time::Duration::from_millis(200);
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Spawns with a policy given as YAML text.
pub async fn spawn_with_policy(policy: &str) -> TestApp {
    let policy = policy.to_string();
    spawn_with(move |s| {
        let path = PathBuf::from(&s.db).with_file_name("policy.yaml");
        std::fs::write(&path, &policy).unwrap();
        s.policy = Some(path);
    })
    .await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_in(dir.path());
    tweak(&mut settings);
    spawn_in(dir, settings).await
}

/// Whether this run's apps use PostgreSQL (`COUNTERSIGN_TEST_BACKEND`).
pub fn on_postgres() -> bool {
    std::env::var("COUNTERSIGN_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// For tests that edit the SQLite file behind the service's back: false
/// (with a note) on the PostgreSQL pass, where there is no file to edit.
pub fn sqlite_file_at_hand(test: &str) -> bool {
    if on_postgres() {
        eprintln!("note: {test} edits the SQLite file; skipped on the PostgreSQL pass");
        return false;
    }
    true
}

/// On the PostgreSQL pass, the database of the app in `dir`: created at its
/// first start and named in a file there, so a restart in the same
/// directory reopens the same database.
async fn postgres_for(dir: &std::path::Path) -> String {
    let marker = dir.join("postgres-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return url;
    }
    let db = postgres_support::TestDb::create("app")
        .await
        .unwrap_or_else(|| {
            panic!(
                "COUNTERSIGN_TEST_BACKEND=postgres needs {}",
                postgres_support::URL_VAR
            )
        });
    let url = db.keep();
    std::fs::write(&marker, &url).unwrap();
    url
}

pub async fn spawn_in(dir: tempfile::TempDir, mut settings: Settings) -> TestApp {
    let db = PathBuf::from(&settings.db);
    // Only the default file moves to PostgreSQL: a test that chose its own
    // database meant it.
    if on_postgres() && db == dir.path().join("countersign.db") {
        settings.db = postgres_for(dir.path()).await;
    }
    let db_url = settings.db.clone();
    let server = countersign::startup::Server::build(settings)
        .await
        .expect("server builds");
    let addr = server.addr;
    let app = server.app.clone();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        server.run(token).await.expect("server runs");
    });
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        app,
        dir,
        db,
        db_url,
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates an API key directly in the store and returns its token.
    pub async fn key(&self, principal: &str, owner: Option<&str>, scopes: &str) -> String {
        let (_, token) = keys::create(
            &self.app.store,
            "test:harness",
            NewKey {
                principal: Principal::parse(principal).unwrap(),
                owner: owner.map(|o| Principal::parse(o).unwrap()),
                scopes: parse_scopes(scopes).unwrap(),
                name: None,
            },
        )
        .await
        .unwrap();
        token
    }

    /// An agent key owned by Olivia, the usual requester in tests.
    pub async fn agent(&self) -> String {
        self.key(
            "agent:deploy-bot",
            Some("user:olivia@example.com"),
            "request,read",
        )
        .await
    }

    /// A human's key for deciding through the API.
    pub async fn human(&self, email: &str) -> String {
        self.key(&format!("user:{email}"), None, "decide,read")
            .await
    }

    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Creates a request and returns its JSON (asserting 201).
    pub async fn create(&self, token: &str, body: Value) -> Value {
        let res = self.post_json(token, "/v1/approvals", &body).await;
        let status = res.status();
        let json: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "create failed: {json}");
        json
    }

    pub async fn create_default(&self, token: &str) -> Value {
        self.create(token, export_request()).await
    }

    pub async fn decide(
        &self,
        token: &str,
        id: &str,
        verdict: &str,
        comment: Option<&str>,
    ) -> reqwest::Response {
        let mut body = json!({ "verdict": verdict });
        if let Some(c) = comment {
            body["comment"] = json!(c);
        }
        self.post_json(token, &format!("/v1/approvals/{id}/decisions"), &body)
            .await
    }

    /// The request as `GET /v1/approvals/{id}` shows it to `token`.
    pub async fn approval(&self, token: &str, id: &str) -> Value {
        self.get(token, &format!("/v1/approvals/{id}"))
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn status_of(&self, token: &str, id: &str) -> String {
        self.approval(token, id).await["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Audit events of one request, oldest first.
    pub async fn audit_kinds(&self, id: &str) -> Vec<String> {
        let mut events = countersign::store::trail::query(
            &self.app.store,
            &countersign::store::trail::AuditFilter {
                request_id: Some(id.parse().unwrap()),
                limit: 500,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        events.reverse();
        events.into_iter().map(|e| e.kind).collect()
    }

    /// How many rows `table` holds (`decisions`, `audit_events`, ...).
    pub async fn count(&self, table: &str) -> i64 {
        let table = table.parse().unwrap();
        countersign::store::stats::count(&self.app.store, table)
            .await
            .unwrap()
    }

    /// Kinds of every audit event, oldest first.
    pub async fn all_kinds(&self) -> Vec<String> {
        self.events(countersign::store::trail::AuditFilter::default())
            .await
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// The request's events of `kind`, oldest first: (actor, data).
    pub async fn events_of(&self, id: &str, kind: &str) -> Vec<(String, serde_json::Value)> {
        self.events(countersign::store::trail::AuditFilter {
            request_id: Some(id.parse().unwrap()),
            ..Default::default()
        })
        .await
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.actor, serde_json::from_str(&e.data).unwrap()))
        .collect()
    }

    /// The events `filter` selects (its limit defaults to the whole
    /// trail), oldest first.
    pub async fn events(
        &self,
        mut filter: countersign::store::trail::AuditFilter,
    ) -> Vec<countersign::store::audit::StoredEvent> {
        if filter.limit == 0 {
            filter.limit = u32::MAX;
        }
        let mut events = countersign::store::trail::query(&self.app.store, &filter)
            .await
            .unwrap();
        events.reverse();
        events
    }

    /// Queues outbox rows for request `id` in its channel's lane, in one
    /// transaction, as the core does (`<channel>.post`, `<channel>.update`).
    pub async fn enqueue(&self, kinds: &[&str], id: &str) {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let id: uuid::Uuid = id.parse().unwrap();
        self.app
            .store
            .write(move |ctx| {
                Box::pin(async move {
                    for kind in &kinds {
                        let channel = kind.split('.').next().unwrap();
                        let lane = format!("{channel}:{id}");
                        ctx.enqueue(kind, &lane, Some(id), &json!({ "request_id": id }))
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
            .unwrap();
    }

    /// Every outbox row, oldest first.
    pub async fn outbox(&self) -> Vec<countersign::store::outbox::OutboxEntry> {
        countersign::store::outbox::entries(&self.app.store)
            .await
            .unwrap()
    }

    /// Where the request's message on `channel` (`slack`, `teams`) lives.
    pub async fn chat_message(
        &self,
        id: &str,
        channel: &str,
    ) -> Option<countersign::store::chat_messages::ChatMessage> {
        countersign::store::chat_messages::find(&self.app.store, id.parse().unwrap(), channel)
            .await
            .unwrap()
    }

    /// Runs the real binary against this app's database. Async, so the
    /// server (on this same test runtime) keeps running while it waits.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .arg("--db")
            .arg(&self.db_url)
            .args(args)
            .env(
                "COUNTERSIGN_SIGNING_KEY",
                self.dir.path().join("audit-key.pem"),
            )
            .env(
                "COUNTERSIGN_PERMIT_KEY",
                self.dir.path().join("permit-key.pem"),
            )
            .env_remove("COUNTERSIGN_CONFIG")
            .output()
            .await
            .unwrap()
    }
}

pub fn export_request() -> Value {
    json!({
        "action": "db.export",
        "resource": "prod/customers",
        "summary": "Export the customers table for the quarterly audit",
        "justification": "Auditors asked for it",
        "details": { "rows": 120000, "format": "csv" },
        "risk": "high",
        "on_behalf_of": "user:alice@example.com",
    })
}

/// Starts the real `countersign serve` binary in `dir` on a free port with
/// JSON logs, waits until it listens, and returns it with its base URL.
pub fn start_binary(dir: &std::path::Path, extra: &[&str]) -> (ChildGuard, String) {
    start_binary_with(dir, extra, &[])
}

/// [`start_binary`] with environment variables set for the server.
pub fn start_binary_with(
    dir: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (ChildGuard, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir)
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "countersign listening"
        {
            break v["addr"].as_str().unwrap().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (ChildGuard(child), format!("http://{addr}"))
}

/// A spawned server that is killed when the test ends, even by a panic.
pub struct ChildGuard(pub std::process::Child);

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
