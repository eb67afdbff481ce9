use serde_json::{Value, json};

use crate::helpers::*;

async fn problem(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn malformed_json_is_a_400_and_changes_nothing() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let res = app
        .client
        .post(app.url("/v1/approvals"))
        .bearer_auth(&agent)
        .header("content-type", "application/json")
        .body("{\"action\": ")
        .send()
        .await
        .unwrap();
    let (status, p) = problem(res).await;
    assert_eq!(status, 400);
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    assert_eq!(app.count("approval_requests").await, 0);
}

#[tokio::test]
async fn wrong_types_missing_and_unknown_fields_are_422s_naming_the_field() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let cases = [
        (
            json!({"action": 5, "resource": "r", "summary": "s"}),
            "action",
        ),
        (json!({"resource": "r", "summary": "s"}), "action"),
        (
            json!({"action": "a", "resource": "r", "summary": "s", "extra": 1}),
            "extra",
        ),
        (
            json!({"action": "a", "resource": "r", "summary": "s", "risk": "apocalyptic"}),
            "risk",
        ),
        (
            json!({"action": "a", "resource": "r", "summary": "s", "on_behalf_of": "agent:x"}),
            "on_behalf_of",
        ),
        (
            json!({"action": "a", "resource": "r", "summary": "s", "expires_in": "forever"}),
            "expires_in",
        ),
        (
            json!({"action": "a", "resource": "r", "summary": "s", "callback_url": "ftp://x"}),
            "callback_url",
        ),
        (
            json!({"action": "a", "resource": "r", "summary": ""}),
            "summary",
        ),
        (
            json!({"action": "a b", "resource": "r", "summary": "s"}),
            "action",
        ),
    ];
    for (body, field) in cases {
        let (status, p) = problem(app.post_json(&agent, "/v1/approvals", &body).await).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            p["detail"].as_str().unwrap().contains(field),
            "{field} named in {p}"
        );
    }
    assert_eq!(app.count("approval_requests").await, 0);
    assert_eq!(
        app.count("audit_events").await,
        1,
        "only the key's creation"
    );
}

#[tokio::test]
async fn an_oversized_body_is_a_413() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let mut body = export_request();
    body["summary"] = json!("x".repeat(200 * 1024));
    let (status, _) = problem(app.post_json(&agent, "/v1/approvals", &body).await).await;
    assert_eq!(status, 413);
    assert_eq!(app.count("approval_requests").await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let res = app
        .client
        .post(app.url("/v1/approvals"))
        .bearer_auth(&agent)
        .body("action=x")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 415);
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_keys_are_401s() {
    let app = spawn_app().await;
    let none = app
        .client
        .post(app.url("/v1/approvals"))
        .json(&export_request())
        .send()
        .await
        .unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(problem(none).await.0, 401);
    let (s, _) = problem(
        app.post_json("not-a-token", "/v1/approvals", &export_request())
            .await,
    )
    .await;
    assert_eq!(s, 401);
    let forged = format!("cs_{}", "A".repeat(43));
    let (s, p) = problem(
        app.post_json(&forged, "/v1/approvals", &export_request())
            .await,
    )
    .await;
    assert_eq!(s, 401);
    assert!(p["detail"].as_str().unwrap().contains("not known"));

    let agent = app.agent().await;
    let list = app.cli(&["keys", "list", "--json"]).await;
    let keys: Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = keys[0]["id"].as_str().unwrap();
    assert!(app.cli(&["keys", "revoke", id]).await.status.success());
    let (s, p) = problem(
        app.post_json(&agent, "/v1/approvals", &export_request())
            .await,
    )
    .await;
    assert_eq!(s, 401);
    assert!(p["detail"].as_str().unwrap().contains("revoked"));
    assert_eq!(app.count("approval_requests").await, 0);
}

#[tokio::test]
async fn the_wrong_scope_is_a_403() {
    let app = spawn_app().await;
    let reader = app.key("service:dashboard", None, "read").await;
    let (s, p) = problem(
        app.post_json(&reader, "/v1/approvals", &export_request())
            .await,
    )
    .await;
    assert_eq!(s, 403);
    assert!(p["detail"].as_str().unwrap().contains("request"));
    let (s, _) = problem(app.get(&reader, "/v1/audit").await).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404s() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        problem(app.get(&agent, &format!("/v1/approvals/{unknown}")).await)
            .await
            .0,
        404
    );
    assert_eq!(
        problem(app.get(&agent, "/v1/approvals/not-an-id").await)
            .await
            .0,
        404
    );
    assert_eq!(
        problem(
            app.decide(&bob, &unknown.to_string(), "approve", None)
                .await
        )
        .await
        .0,
        404
    );
    assert_eq!(
        problem(app.client.get(app.url("/v2/nothing")).send().await.unwrap())
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn bad_query_parameters_are_400s() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        problem(
            app.get(&agent, &format!("/v1/approvals/{id}?wait=61"))
                .await
        )
        .await
        .0,
        400
    );
    assert_eq!(
        problem(
            app.get(&agent, &format!("/v1/approvals/{id}?wait=soon"))
                .await
        )
        .await
        .0,
        400
    );
    assert_eq!(
        problem(app.get(&agent, "/v1/approvals?status=maybe").await)
            .await
            .0,
        400
    );
    assert_eq!(
        problem(app.get(&agent, "/v1/approvals?limit=0").await)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn an_invalid_policy_stops_the_service_at_start_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: x\n    effect: require_approval\n    approvers: [group:ghosts]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("ghosts"),
        "{stderr}"
    );
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["policy", "check"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(!check.status.success());
}

#[tokio::test]
async fn an_invalid_config_stops_the_service_at_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir.path())
        .env("COUNTERSIGN_LISTEN", "not-an-address")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("COUNTERSIGN_LISTEN"));
}
