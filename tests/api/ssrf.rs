//! Webhook destinations: an agent's `callback_url` cannot make Countersign
//! reach loopback, private or metadata addresses, in any spelling, now or
//! at delivery; redirects are not followed; credentials in the URL are
//! refused and never echoed; and a receiver's final "no" gives up at once.

use countersign::net::egress::Destinations;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

/// An app with no allowlist: any public host, nothing else.
async fn spawn_public() -> TestApp {
    spawn_with(|s| s.webhook_destinations = Destinations::public()).await
}

fn with_callback(url: &str) -> Value {
    let mut body = export_request();
    body["callback_url"] = json!(url);
    body
}

async fn wait_for_kind(app: &TestApp, id: &str, kind: &str) -> Vec<String> {
    for _ in 0..200 {
        let kinds = app.audit_kinds(id).await;
        if kinds.iter().any(|k| k == kind) {
            return kinds;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{kind} never appeared: {:?}", app.audit_kinds(id).await);
}

/// The whole database, WAL included, as text, to look for a leak.
fn database_text(app: &TestApp) -> String {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", app.db.display());
        if let Ok(bytes) = std::fs::read(&path) {
            all.extend(bytes);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn callback_urls_that_reach_loopback_private_or_metadata_addresses_are_refused_422_in_any_spelling()
 {
    let receiver = MockServer::start().await;
    let port = receiver.address().port();
    let app = spawn_public().await;
    let agent = app.agent().await;
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://0177.0.0.1:{port}/hook"),
        format!("http://0x7f.0.0.1:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        format!("http://0.0.0.0:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://LOCALHOST.:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::ffff:7f00:1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
        "http://10.0.0.1/hook".to_string(),
        "http://172.16.5.4/hook".to_string(),
        "http://192.168.0.1/hook".to_string(),
        "http://100.64.0.1/hook".to_string(),
        "http://[fe80::1]/hook".to_string(),
        "http://[fc00::1]/hook".to_string(),
        "http://224.0.0.1/hook".to_string(),
        "http://[ff02::1]/hook".to_string(),
        "http://255.255.255.255/hook".to_string(),
    ] {
        let res = app
            .post_json(&agent, "/v1/approvals", &with_callback(&url))
            .await;
        assert_eq!(res.status(), 422, "{url}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{url}"
        );
        let problem: Value = res.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("callback_url") && detail.contains("address"),
            "{url}: {detail}"
        );
    }
    assert_eq!(app.count("approval_requests").await, 0);
    assert_eq!(app.count("outbox").await, 0);
    assert!(receiver.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn with_an_allowlist_only_listed_hosts_and_addresses_are_accepted() {
    let app = spawn_with(|s| {
        s.webhook_destinations = Destinations::allowlist("127.0.0.1:9999, *.example.test").unwrap()
    })
    .await;
    let agent = app.agent().await;
    for url in [
        "http://127.0.0.1:9998/hook",
        "http://127.0.0.2:9999/hook",
        "http://localhost:9999/hook",
        "http://example.test/hook",
        "https://hooks.example.com/hook",
    ] {
        let res = app
            .post_json(&agent, "/v1/approvals", &with_callback(url))
            .await;
        assert_eq!(res.status(), 422, "{url}");
    }
    app.create(&agent, with_callback("http://127.0.0.1:9999/hook"))
        .await;
    assert_eq!(app.count("approval_requests").await, 1);
}

#[tokio::test]
async fn a_user_name_or_password_in_a_callback_url_is_refused_and_never_echoed() {
    let receiver = MockServer::start().await;
    let port = receiver.address().port();
    let app = spawn_app().await;
    let agent = app.agent().await;
    for url in [
        format!("http://user:s3cretpw@127.0.0.1:{port}/hook"),
        format!("http://s3cretpw@127.0.0.1:{port}/hook"),
        format!("http://:s3cretpw@127.0.0.1:{port}/hook"),
    ] {
        let res = app
            .post_json(&agent, "/v1/approvals", &with_callback(&url))
            .await;
        assert_eq!(res.status(), 422, "{url}");
        let text = res.text().await.unwrap();
        assert!(!text.contains("s3cretpw"), "{text}");
        assert!(text.contains("user name or password"), "{text}");
    }
    assert_eq!(app.count("approval_requests").await, 0);
    let auditor = app.key("user:carol@example.com", None, "audit").await;
    let trail = app
        .get(&auditor, "/v1/audit/export")
        .await
        .text()
        .await
        .unwrap();
    assert!(!trail.contains("s3cretpw"));
    // The file's bytes, where there is a file (the export covers the trail
    // on PostgreSQL too).
    if !crate::helpers::on_postgres() {
        assert!(!database_text(&app).contains("s3cretpw"));
    }
    assert!(receiver.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_receivers_redirect_is_not_followed_and_the_delivery_is_given_up_audited() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&elsewhere)
        .await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/stolen", elsewhere.uri())),
        )
        .mount(&receiver)
        .await;
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app
        .create(&agent, with_callback(&format!("{}/hook", receiver.uri())))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.decide(&bob, &id, "approve", None).await.status(), 200);
    let kinds = wait_for_kind(&app, &id, "delivery.given_up").await;
    // Retries would come every 50-200 ms in tests: wait for any.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
    assert_eq!(
        kinds.iter().filter(|k| *k == "webhook.failed").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_receiver_answering_404_or_410_is_given_up_at_once_audited_without_retries() {
    for status in [404, 410] {
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&receiver)
            .await;
        let app = spawn_app().await;
        let agent = app.agent().await;
        let bob = app.human("bob@example.com").await;
        let id = app
            .create(&agent, with_callback(&format!("{}/hook", receiver.uri())))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        app.decide(&bob, &id, "approve", None).await;
        wait_for_kind(&app, &id, "delivery.given_up").await;
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert_eq!(
            receiver.received_requests().await.unwrap().len(),
            1,
            "{status}: one attempt"
        );
        let kinds = app.audit_kinds(&id).await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "webhook.failed").count(),
            1,
            "{status}: {kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| *k == "delivery.given_up").count(),
            1,
            "{status}: {kinds:?}"
        );
        let open = countersign::store::outbox::backlog(&app.app.store)
            .await
            .unwrap();
        assert_eq!(open, 0);
    }
}

#[tokio::test]
async fn a_receiver_answering_429_is_retried() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(2)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app
        .create(&agent, with_callback(&format!("{}/hook", receiver.uri())))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "approve", None).await;
    let kinds = wait_for_kind(&app, &id, "webhook.delivered").await;
    assert!(!kinds.iter().any(|k| k == "delivery.given_up"), "{kinds:?}");
    assert_eq!(receiver.received_requests().await.unwrap().len(), 3);
}

/// DNS rebinding, replayed deterministically: a name that passed the check
/// when the request was made points at loopback by the time the webhook
/// goes out. Here the name is `localhost` and what changes is the
/// allowlist (the first life admits loopback addresses, the second only the
/// name), so the address connected to is judged at delivery by the
/// client's resolver, not at create.
#[tokio::test]
async fn a_name_that_resolves_to_loopback_at_delivery_is_never_connected_to() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let port = receiver.address().port();
    let app = spawn_with(|s| {
        s.webhook_destinations = Destinations::allowlist("localhost, 127.0.0.1, ::1").unwrap()
    })
    .await;
    let agent = app.agent().await;
    let id = app
        .create(
            &agent,
            with_callback(&format!("http://localhost:{port}/hook")),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = app.stop().await;

    let mut settings = settings_in(dir.path());
    settings.webhook_destinations = Destinations::allowlist("localhost").unwrap();
    let app = spawn_in(dir, settings).await;
    let bob = app.human("bob@example.com").await;
    assert_eq!(app.decide(&bob, &id, "approve", None).await.status(), 200);
    wait_for_kind(&app, &id, "delivery.given_up").await;
    assert!(receiver.received_requests().await.unwrap().is_empty());
    let auditor = app.key("user:carol@example.com", None, "audit").await;
    let events: Value = app
        .get(
            &auditor,
            &format!("/v1/audit?request={id}&kind=webhook.failed"),
        )
        .await
        .json()
        .await
        .unwrap();
    let text = events.to_string();
    assert!(text.contains("loopback"), "{text}");
}
