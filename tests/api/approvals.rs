use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_request_needing_approval_is_created_pending_with_its_policy_and_hash() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let res = app
        .post_json(&agent, "/v1/approvals", &export_request())
        .await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("location").is_some());
    let a: serde_json::Value = res.json().await.unwrap();
    assert_eq!(a["status"], "pending");
    assert_eq!(a["requester"], "agent:deploy-bot");
    assert_eq!(a["policy"]["rule"], "default");
    assert_eq!(a["policy"]["version"].as_str().unwrap().len(), 64);
    assert_eq!(a["required_approvals"], 1);
    assert_eq!(a["approvals"], json!([]));
    assert_eq!(a["payload_sha256"].as_str().unwrap().len(), 64);
    let kinds = app.audit_kinds(a["id"].as_str().unwrap()).await;
    assert_eq!(kinds, ["request.created", "policy.evaluated"]);
}

#[tokio::test]
async fn the_requester_is_the_keys_principal_not_a_body_field() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let mut body = export_request();
    body["requester"] = json!("user:mallory@example.com");
    let res = app.post_json(&agent, "/v1/approvals", &body).await;
    assert_eq!(res.status(), 422, "an unknown field is refused");
    assert_eq!(app.count("approval_requests").await, 0);
}

#[tokio::test]
async fn policy_allow_approves_at_once_and_policy_deny_denies_at_once_both_audited() {
    let app = spawn_with_policy(
        "rules:\n  - name: reads\n    action: db.read\n    effect: allow\n  - name: drops\n    action: db.drop\n    effect: deny\n",
    )
    .await;
    let agent = app.agent().await;
    let mut body = export_request();
    body["action"] = json!("db.read");
    let a = app.create(&agent, body.clone()).await;
    assert_eq!(a["status"], "approved");
    assert_eq!(a["decided_by"], "policy:reads");
    assert_eq!(
        app.audit_kinds(a["id"].as_str().unwrap()).await,
        // An approval earns a permit, issued in the same job (src/permits).
        [
            "request.created",
            "policy.evaluated",
            "request.approved",
            "permit.issued"
        ]
    );
    body["action"] = json!("db.drop");
    let d = app.create(&agent, body).await;
    assert_eq!(d["status"], "denied");
    assert_eq!(
        app.audit_kinds(d["id"].as_str().unwrap()).await,
        ["request.created", "policy.evaluated", "request.denied"]
    );
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_return_the_same_request() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let send = |body: serde_json::Value| {
        app.client
            .post(app.url("/v1/approvals"))
            .bearer_auth(&agent)
            .header("idempotency-key", "export-42")
            .json(&body)
            .send()
    };
    let first = send(export_request()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = send(export_request()).await.unwrap();
    assert_eq!(again.status(), 200);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let mut other = export_request();
    other["summary"] = json!("Something else");
    let conflict = send(other).await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(app.count("approval_requests").await, 1);
}

#[tokio::test]
async fn a_long_poll_returns_the_moment_a_decision_lands() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let a = app.create_default(&agent).await;
    let id = a["id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let path = format!("/v1/approvals/{id}?wait=30");
    let poll = app.get(&agent, &path);
    let decide = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        app.decide(&bob, &id, "approve", None).await
    };
    let (polled, decided) = tokio::join!(poll, decide);
    assert_eq!(decided.status(), 200);
    let polled: serde_json::Value = polled.json().await.unwrap();
    assert_eq!(polled["status"], "approved");
    assert_eq!(polled["approvals"][0]["principal"], "user:bob@example.com");
    // Woken by the decision, not by the 30-second timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[tokio::test]
async fn a_long_poll_answers_pending_at_its_timeout() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let a = app.create_default(&agent).await;
    let v: serde_json::Value = app
        .get(
            &agent,
            &format!("/v1/approvals/{}?wait=1", a["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "pending");
}

#[tokio::test]
async fn pending_requests_expire_at_their_deadline_and_expiry_denies() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let mut body = export_request();
    body["expires_in"] = json!("1s");
    let a = app.create(&agent, body).await;
    let id = a["id"].as_str().unwrap();
    let v: serde_json::Value = app
        .get(&agent, &format!("/v1/approvals/{id}?wait=10"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "expired");
    assert_eq!(v["decided_by"], "system:countersign");
    assert!(
        app.audit_kinds(id)
            .await
            .contains(&"request.expired".to_string())
    );
    let bob = app.human("bob@example.com").await;
    assert_eq!(app.decide(&bob, id, "approve", None).await.status(), 409);
}

#[tokio::test]
async fn the_requester_cancels_a_pending_request_and_nobody_else_can() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let other = app.key("agent:other-bot", None, "request").await;
    let a = app.create_default(&agent).await;
    let id = a["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/v1/approvals/{id}/cancel")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .client
        .post(app.url(&format!("/v1/approvals/{id}/cancel")))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.status_of(&agent, id).await, "cancelled");
    let again = app
        .client
        .post(app.url(&format!("/v1/approvals/{id}/cancel")))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn requests_are_listed_newest_first_with_filters_and_cursor_paging() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let reader = app.key("service:dashboard", None, "read").await;
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(
            app.create_default(&agent).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let page1: serde_json::Value = app
        .get(&reader, "/v1/approvals?limit=3&status=pending&action=db.*")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    assert_eq!(page1["items"][0]["id"], ids[4].as_str());
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2: serde_json::Value = app
        .get(&reader, &format!("/v1/approvals?limit=3&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert!(page2["next_cursor"].is_null());
    let none: serde_json::Value = app
        .get(&reader, "/v1/approvals?requester=agent:nobody")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], json!([]));
}

#[tokio::test]
async fn a_key_with_only_the_request_scope_sees_only_its_own_requests() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let other = app.key("agent:other-bot", None, "request").await;
    let a = app.create_default(&agent).await;
    let res = app
        .get(
            &other,
            &format!("/v1/approvals/{}", a["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(res.status(), 404);
    let list: serde_json::Value = app.get(&other, "/v1/approvals").await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/approvals",
        "/v1/approvals/{id}",
        "/v1/approvals/{id}/decisions",
        "/v1/approvals/{id}/cancel",
        "/v1/audit",
        "/v1/audit/export",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let agent = app.agent().await;
    app.create_default(&agent).await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("countersign_pending_requests"), "{text}");
    assert!(text.contains("countersign_outbox_backlog"), "{text}");
}
