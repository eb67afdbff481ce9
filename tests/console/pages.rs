//! The audit explorer and the admin page, and who may see them.

use crate::harness::{BOB, CAROL, spawn};
use crate::helpers::export_request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_explores_the_trail_filters_it_and_sees_it_verify() {
    let t = spawn().await;
    let (id, _) = t.request(export_request()).await;
    let b = t.browser_as(CAROL).await;
    b.goto(&t.url("/ui/audit")).await;
    let page = b.wait_text("The chain verifies").await;
    assert!(
        page.contains("request.created") && page.contains("console.signed_in"),
        "{page}"
    );
    b.screenshot("audit").await;

    b.fill("input[name=request]", &id).await;
    b.fill("input[name=kind]", "policy.").await;
    b.click("form.filters button").await;
    let filtered = b.wait_text("policy.evaluated").await;
    assert!(!filtered.contains("request.created"), "{filtered}");

    b.goto(&t.url("/ui/admin")).await;
    let admin = b.wait_text("API keys").await;
    assert!(admin.contains("agent:deploy-bot"), "{admin}");
    b.stop().await;

    // Downloads are the API's export.
    let (client, cookie) = t.http_session(CAROL).await;
    let res = client
        .get(t.url("/ui/audit/export?format=csv"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(res.text().await.unwrap().contains("request.created"));
}

#[tokio::test]
async fn someone_who_is_not_an_auditor_may_not_read_the_trail_or_the_keys() {
    let t = spawn().await;
    let (client, cookie) = t.http_session(BOB).await;
    for path in ["/ui/audit", "/ui/audit/export", "/ui/admin"] {
        let res = client
            .get(t.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_shows_a_new_request_and_drops_a_decided_one_without_a_reload() {
    let t = spawn().await;
    let b = t.browser_as(BOB).await;
    b.wait_text("Nothing is waiting for you.").await;
    eventually_connected(&b).await;

    let (id, _) = t
        .request(serde_json::json!({
            "action": "deploy.release", "resource": "prod/web", "summary": "Ship 1.4.2", "risk": "medium",
        }))
        .await;
    b.wait_text("prod/web").await;
    assert_eq!(
        b.path().await,
        "/ui/",
        "no navigation: the list was replaced in place"
    );

    // Decided elsewhere (here: by Carol through the API), it leaves the list.
    let carol = t.slack.app.human("carol@example.com").await;
    let res = t.slack.app.decide(&carol, &id, "approve", None).await;
    assert_eq!(res.status(), 200);
    b.wait_text("Nothing is waiting for you.").await;
    b.stop().await;
}

/// Waits until the page's event stream is open (the script marks the body).
async fn eventually_connected(b: &crate::browser::Browser) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = b
            .client
            .execute("return document.body.dataset.connected || '';", vec![])
            .await
            .unwrap();
        if v == "yes" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the inbox never connected to /ui/events"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
