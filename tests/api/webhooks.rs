use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    fail_first: Arc<Mutex<usize>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    r.calls.lock().unwrap().push((headers, body));
    let mut left = r.fail_first.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_receiver(fail_first: usize) -> (String, Receiver) {
    let r = Receiver {
        fail_first: Arc::new(Mutex::new(fail_first)),
        ..Default::default()
    };
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}/hook"), r)
}

async fn wait_for_calls(r: &Receiver, n: usize) {
    for _ in 0..200 {
        if r.calls.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "receiver got {} calls, wanted {n}",
        r.calls.lock().unwrap().len()
    );
}

#[tokio::test]
async fn a_final_state_is_posted_to_the_callback_signed_with_hmac() {
    let (url, receiver) = start_receiver(0).await;
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let mut body = export_request();
    body["callback_url"] = json!(url);
    let id = app.create(&agent, body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "approve", None).await;
    wait_for_calls(&receiver, 1).await;

    let (headers, body) = receiver.calls.lock().unwrap()[0].clone();
    let ts: i64 = headers["x-countersign-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let sig = headers["x-countersign-signature"].to_str().unwrap();
    assert!(countersign::webhook::verify(
        "test-webhook-secret",
        ts,
        body.as_bytes(),
        sig
    ));
    assert!(!countersign::webhook::verify(
        "wrong-secret",
        ts,
        body.as_bytes(),
        sig
    ));
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sent["id"], id.as_str());
    assert_eq!(sent["status"], "approved");
}

#[tokio::test]
async fn a_failing_receiver_is_retried_until_it_accepts_and_each_attempt_is_audited() {
    let (url, receiver) = start_receiver(3).await;
    let app = spawn_app().await;
    let agent = app.agent().await;
    let mut body = export_request();
    body["callback_url"] = json!(url);
    body["expires_in"] = json!("1s");
    let id = app.create(&agent, body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_calls(&receiver, 4).await;
    // Let the last outcome commit.
    for _ in 0..100 {
        if app
            .audit_kinds(&id)
            .await
            .contains(&"webhook.delivered".to_string())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let kinds = app.audit_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "webhook.failed").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "webhook.delivered").count(),
        1,
        "{kinds:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        receiver.calls.lock().unwrap().len(),
        4,
        "delivered exactly once after the failures"
    );
    let backlog = countersign::store::outbox::backlog(&app.app.store)
        .await
        .unwrap();
    assert_eq!(backlog, 0);
}

#[tokio::test]
async fn a_queued_webhook_survives_a_restart() {
    // The receiver is down (503) during the first life of the service.
    let (url, receiver) = start_receiver(usize::MAX).await;
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
    wait_for_calls(&receiver, 1).await;
    let dir = app.stop().await;

    // It comes back; so does the service, which delivers what it owed.
    *receiver.fail_first.lock().unwrap() = 0;
    let seen = receiver.calls.lock().unwrap().len();
    let settings = settings_in(dir.path());
    let second = spawn_in(dir, settings).await;
    wait_for_calls(&receiver, seen + 1).await;
    let last: Value =
        serde_json::from_str(&receiver.calls.lock().unwrap().last().unwrap().1).unwrap();
    assert_eq!(last["id"], id.as_str());
    assert_eq!(last["status"], "approved");
    for _ in 0..100 {
        if second
            .audit_kinds(&id)
            .await
            .contains(&"webhook.delivered".to_string())
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("delivery was not audited");
}

#[tokio::test]
async fn a_webhook_is_given_up_after_the_configured_time_and_that_is_audited() {
    let (url, receiver) = start_receiver(usize::MAX).await;
    let app = spawn_with(|s| s.outbox.give_up_after = std::time::Duration::from_millis(500)).await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let mut body = export_request();
    body["callback_url"] = json!(url);
    let id = app.create(&agent, body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "approve", None).await;
    for _ in 0..200 {
        if app
            .audit_kinds(&id)
            .await
            .contains(&"delivery.given_up".to_string())
        {
            let outbox = app.outbox().await;
            let failed = outbox
                .iter()
                .filter(|r| r.outcome.as_deref() == Some("failed"))
                .count();
            assert_eq!(failed, 1);
            assert!(!receiver.calls.lock().unwrap().is_empty());
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the delivery was never given up");
}
