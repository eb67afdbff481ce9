//! Checkpoints leave the box through a webhook too: each published head is
//! POSTed through the outbox, signed like callback webhooks, at most once
//! per interval and only when the head moved, so deliveries (which audit)
//! cannot feed a loop of ever newer heads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::helpers::*;
use crate::tamper::{stdout_json, tamper};

#[derive(Clone)]
struct Receiver {
    /// The bodies received, with their timestamp and signature headers.
    calls: Arc<Mutex<Vec<(String, String, String)>>>,
    answer: StatusCode,
    /// When set, the first call records its body and then waits for this
    /// before answering, so a delivery stays in flight.
    hold: Arc<Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    r.calls.lock().unwrap().push((
        body,
        h("x-countersign-timestamp"),
        h("x-countersign-signature"),
    ));
    let held = r.hold.lock().unwrap().take();
    if let Some(release) = held {
        let _ = release.await;
    }
    r.answer
}

async fn start_receiver(answer: StatusCode) -> (String, Receiver) {
    let r = Receiver {
        calls: Arc::default(),
        answer,
        hold: Arc::default(),
    };
    let router = axum::Router::new()
        .route("/checkpoints", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}/checkpoints"), r)
}

impl Receiver {
    fn bodies(&self) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(b, _, _)| serde_json::from_str(b).unwrap())
            .collect()
    }
}

async fn app_with_webhook_sink(url: String) -> TestApp {
    spawn_with(move |s| {
        s.checkpoint_sinks.webhook = Some(url);
        s.checkpoint_sinks.interval = Duration::from_millis(200);
    })
    .await
}

async fn newest_signed(app: &TestApp) -> i64 {
    countersign::store::checkpoint_sinks::newest_signed_seq(&app.app.store)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// The webhook sink's outbox rows, oldest first.
async fn checkpoint_outbox(app: &TestApp) -> Vec<countersign::store::outbox::OutboxEntry> {
    app.outbox()
        .await
        .into_iter()
        .filter(|r| r.kind == "checkpoint.webhook")
        .collect()
}

async fn checkpoint_rows(app: &TestApp, undelivered_only: bool) -> i64 {
    checkpoint_outbox(app)
        .await
        .iter()
        .filter(|r| !undelivered_only || r.done_at.is_none())
        .count() as i64
}

/// The data of every event of `kind`, oldest first.
async fn events_of_kind(app: &TestApp, kind: &str) -> Vec<Value> {
    app.events(countersign::store::trail::AuditFilter {
        kind: Some(kind.into()),
        ..Default::default()
    })
    .await
    .into_iter()
    .map(|e| serde_json::from_str::<Value>(&e.data).unwrap())
    .collect()
}

/// Waits (generously) until the receiver has the newest signed head.
async fn received_head(app: &TestApp, r: &Receiver) -> Vec<Value> {
    for _ in 0..600 {
        let head = newest_signed(app).await;
        let got = r.bodies();
        if got.last().is_some_and(|c| c["seq"] == head) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the receiver never got the newest head: {:?}", r.bodies());
}

fn write_lines(path: &std::path::Path, lines: &[Value]) {
    let text: String = lines.iter().map(|c| c.to_string() + "\n").collect();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn the_webhook_sink_gets_signed_checkpoints_that_verify_the_trail() {
    let (url, receiver) = start_receiver(StatusCode::NO_CONTENT).await;
    let app = app_with_webhook_sink(url).await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "approve", None).await;
    let got = received_head(&app, &receiver).await;

    for (body, ts, sig) in receiver.calls.lock().unwrap().iter() {
        let ts: i64 = ts.parse().unwrap();
        assert!(
            countersign::webhook::verify("test-webhook-secret", ts, body.as_bytes(), sig),
            "{body} {sig}"
        );
    }
    for c in &got {
        assert_eq!(c["key_id"], app.app.store.signer.public_hex());
        assert_eq!(c["signature"].as_str().unwrap().len(), 128);
        assert!(c["ts"].as_str().unwrap().ends_with('Z'));
    }
    // A delivered checkpoint is its own record: no event for it.
    let delivery_events = events_of_kind(&app, "webhook.").await.len()
        + events_of_kind(&app, "delivery.given_up").await.len();
    assert_eq!(delivery_events, 0);
    assert!(checkpoint_rows(&app, true).await <= 1);

    let file = app.dir.path().join("received.jsonl");
    write_lines(&file, &got);
    let out = app
        .cli(&["audit", "verify", "--checkpoints", file.to_str().unwrap()])
        .await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["checkpoints_checked"], got.len());

    let auditor = app.key("user:carol@example.com", None, "audit").await;
    let api: Value = app
        .get(&auditor, "/v1/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["checkpoint_sink"], "webhook", "{api}");
    // At least the head received; a newer one may have gone out since.
    let seq = |c: &Value| c["seq"].as_i64().unwrap();
    assert!(seq(&api["checkpoint"]) >= seq(got.last().unwrap()), "{api}");
}

#[tokio::test]
async fn a_tail_cut_behind_a_webhook_checkpoint_fails_verify_naming_it() {
    if !crate::helpers::sqlite_file_at_hand(
        "a_tail_cut_behind_a_webhook_checkpoint_fails_verify_naming_it",
    ) {
        return;
    }
    let (url, receiver) = start_receiver(StatusCode::OK).await;
    let app = app_with_webhook_sink(url).await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before_decision: i64 = app.count("audit_events").await;
    app.decide(&bob, &id, "deny", Some("no")).await;
    let got = received_head(&app, &receiver).await;
    let stopped = app.stop().await;
    let file = stopped.path().join("received.jsonl");
    write_lines(&file, &got);

    let db = stopped.path().join("countersign.db");
    tamper(
        &db,
        &[
            &format!("DELETE FROM audit_events WHERE seq > {before_decision}"),
            &format!("DELETE FROM audit_signatures WHERE seq > {before_decision}"),
        ],
    )
    .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("--db")
        .arg(&db)
        .args(["audit", "verify", "--checkpoints", file.to_str().unwrap()])
        .env(
            "COUNTERSIGN_SIGNING_KEY",
            stopped.path().join("audit-key.pem"),
        )
        .env_remove("COUNTERSIGN_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stdout_json(&out));
    let v = stdout_json(&out);
    let first_lost = got
        .iter()
        .find(|c| c["seq"].as_i64().unwrap() > before_decision)
        .unwrap();
    assert_eq!(v["checkpoint"]["seq"], first_lost["seq"], "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("checkpoint at seq {}", first_lost["seq"])),
        "{v}"
    );
}

#[tokio::test]
async fn a_receiver_that_always_fails_under_heavy_activity_never_makes_checkpoints_loop() {
    let (url, receiver) = start_receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let app = app_with_webhook_sink(url).await;
    let agent = app.agent().await;
    for _ in 0..40 {
        app.create_default(&agent).await;
        assert!(checkpoint_rows(&app, true).await <= 1);
    }
    // Wait until the row waiting is the newest head, then watch it retried.
    for _ in 0..600 {
        let pending: Option<String> = checkpoint_outbox(&app)
            .await
            .into_iter()
            .find(|r| r.done_at.is_none())
            .map(|r| r.payload);
        let head = newest_signed(&app).await;
        if pending.is_some_and(|p| serde_json::from_str::<Value>(&p).unwrap()["seq"] == head) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rows, head, calls) = (
        checkpoint_rows(&app, false).await,
        newest_signed(&app).await,
        receiver.calls.lock().unwrap().len(),
    );
    for _ in 0..600 {
        if receiver.calls.lock().unwrap().len() >= calls + 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.calls.lock().unwrap().len() >= calls + 5);
    // Retries audit nothing, so the head stays and nothing new is queued.
    assert_eq!(newest_signed(&app).await, head);
    assert_eq!(checkpoint_rows(&app, false).await, rows);
    assert_eq!(checkpoint_rows(&app, true).await, 1);
    assert!(
        receiver
            .bodies()
            .iter()
            .rev()
            .take(5)
            .all(|c| c["seq"] == head)
    );
}

#[tokio::test]
async fn a_head_queued_while_the_one_it_supersedes_is_in_flight_is_delivered_promptly() {
    // The race behind the flaky test above: the publisher supersedes the
    // row being delivered and queues a newer one in the same lane. On
    // PostgreSQL the worker used to claim (lease) that row although its
    // lane was busy, skip it, and so leave it for the whole lease (60 s).
    let (url, receiver) = start_receiver(StatusCode::OK).await;
    let (release, held) = tokio::sync::oneshot::channel();
    *receiver.hold.lock().unwrap() = Some(held);
    let app = app_with_webhook_sink(url).await;
    let agent = app.agent().await;
    app.create_default(&agent).await;
    for _ in 0..600 {
        if !receiver.calls.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = checkpoint_outbox(&app).await.last().unwrap().id;
    // While the first head is in flight, queue a newer one behind it.
    app.create_default(&agent).await;
    for _ in 0..600 {
        if checkpoint_outbox(&app).await.last().unwrap().id > first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(checkpoint_outbox(&app).await.last().unwrap().id > first);
    // Give the worker, woken by that commit, time to look at the lane.
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send(()).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..100 {
        let head = newest_signed(&app).await;
        if receiver.bodies().last().is_some_and(|c| c["seq"] == head) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let head = newest_signed(&app).await;
    assert_eq!(
        receiver.bodies().last().unwrap()["seq"],
        head,
        "the newest head was not delivered within {:?} of the lane freeing",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_receiver_answering_4xx_is_given_up_and_audited_at_most_once_per_interval() {
    let (url, receiver) = start_receiver(StatusCode::GONE).await;
    let started = std::time::Instant::now();
    let app = app_with_webhook_sink(url).await;
    let agent = app.agent().await;
    app.create_default(&agent).await;
    let given_up = || events_of_kind(&app, "delivery.given_up");
    for _ in 0..600 {
        if given_up().await.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = given_up().await;
    let elapsed = started.elapsed();
    assert!(events.len() >= 3, "{events:?}");
    // Each row is tried once (4xx is final) and given up once.
    let mut ids: Vec<i64> = events
        .iter()
        .map(|e| e["outbox_id"].as_i64().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "{events:?}");
    assert!(events.iter().all(|e| e["kind"] == "checkpoint.webhook"));
    assert!(receiver.calls.lock().unwrap().len() <= events.len() + 1);
    // The publisher ticks once per 200 ms: never more give-ups than ticks.
    let ticks = elapsed.as_millis() as usize / 200 + 2;
    assert!(events.len() <= ticks, "{} in {elapsed:?}", events.len());
}

#[tokio::test]
async fn a_checkpoint_webhook_off_the_allowlist_stops_the_service_at_start() {
    let env = |k: &str| match k {
        "COUNTERSIGN_WEBHOOK_SECRET" => Some("s".to_string()),
        "COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS" => Some("hooks.example.com".to_string()),
        "COUNTERSIGN_AUDIT_CHECKPOINT_WEBHOOK" => Some("http://127.0.0.1:9/x".to_string()),
        _ => None,
    };
    let e = countersign::config::Settings::load(None, env, &Default::default()).unwrap_err();
    assert!(
        e.contains("COUNTERSIGN_AUDIT_CHECKPOINT_WEBHOOK") && e.contains("allowlist"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut s = settings_in(dir.path());
    s.checkpoint_sinks.webhook = Some("http://169.254.169.254/latest".into());
    s.webhook_destinations = countersign::net::egress::Destinations::public();
    let e = countersign::startup::Server::build(s).await.err().unwrap();
    assert!(
        format!("{e:#}").contains("COUNTERSIGN_AUDIT_CHECKPOINT_WEBHOOK"),
        "{e:#}"
    );
}
