//! Inputs the fuzz targets in `fuzz/` found, replayed against the real
//! service (docs/FUZZING.md lists them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// A receiver that always answers 503 with a `Retry-After` millions of
/// years away, and counts the calls.
async fn start_far_future_receiver() -> (String, Arc<Mutex<usize>>) {
    async fn receive(
        State(calls): State<Arc<Mutex<usize>>>,
    ) -> (StatusCode, [(&'static str, &'static str); 1]) {
        *calls.lock().unwrap() += 1;
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "99999999999999")],
        )
    }
    let calls = Arc::new(Mutex::new(0));
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}/hook"), calls)
}

#[tokio::test]
async fn a_receiver_asking_to_retry_in_millions_of_years_is_called_once_and_the_failure_audited() {
    let (url, calls) = start_far_future_receiver().await;
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let mut body = export_request();
    body["callback_url"] = json!(url);
    let id = app.create(&agent, body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.decide(&bob, &id, "approve", None).await.status(), 200);
    for _ in 0..100 {
        if app
            .audit_kinds(&id)
            .await
            .iter()
            .any(|k| k == "webhook.failed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Before the fix the next attempt's time overflowed, the write job
    // panicked and rolled back, and the row stayed due: the receiver was
    // called every few milliseconds and no attempt was ever audited.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*calls.lock().unwrap(), 1, "called again and again");
    let kinds = app.audit_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "webhook.failed").count(),
        1,
        "{kinds:?}"
    );
    // Tried again at the give-up horizon (24 h by default), not never.
    let outbox = app.outbox().await;
    let row = outbox
        .iter()
        .find(|r| r.kind == "webhook" && r.done_at.is_none())
        .expect("the webhook row, still due");
    let next = countersign::clock::parse(&row.next_attempt_at).unwrap();
    let wait = next - countersign::clock::now();
    assert!(
        wait > chrono::Duration::hours(23) && wait <= chrono::Duration::hours(24),
        "next attempt in {wait}"
    );
}
