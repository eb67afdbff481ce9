//! MCP over streamable HTTP: `POST /mcp` with the API key as bearer.

use serde_json::{Value, json};

use crate::helpers::spawn_app;
use crate::support::{call, http_client, outcome, person_decides, request_args, text};

#[tokio::test]
async fn an_mcp_client_lists_the_four_tools_and_each_says_to_proceed_only_when_approved() {
    let app = spawn_app().await;
    let client = http_client(&app, &app.agent().await).await;
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "get_approval",
            "list_approvals",
            "request_approval",
            "wait_for_approval"
        ]
    );
    let request = tools.iter().find(|t| t.name == "request_approval").unwrap();
    let description = request.description.as_deref().unwrap();
    assert!(description.contains("only if"), "{description}");
    assert!(description.contains("\"approved\""), "{description}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn request_approval_returns_approved_when_a_person_approves_over_the_api_meanwhile() {
    let app = spawn_app().await;
    let client = http_client(&app, &app.agent().await).await;
    let bob = person_decides(
        app.base.clone(),
        app.human("bob@example.com").await,
        "approve",
        "checked",
    );
    let r = call(&client, "request_approval", request_args(30)).await;
    let id = bob.await.unwrap();
    let o = outcome(&r);
    assert_eq!(o["id"], json!(id));
    assert_eq!(o["status"], "approved");
    assert_eq!(o["decided_by"], "user:bob@example.com");
    assert_eq!(o["comment"], "checked");
    assert!(o["payload_sha256"].as_str().unwrap().len() == 64, "{o}");
    assert!(o["expires_at"].is_string(), "{o}");
    assert_eq!(text(&r), "approved by user:bob@example.com: \"checked\"");
    // The request is the API's own, made by the key's principal.
    let token = app.agent().await;
    let seen: Value = app.approval(&token, &id).await;
    assert_eq!(seen["requester"], "agent:deploy-bot");
    assert_eq!(seen["status"], "approved");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn request_approval_returns_denied_with_the_reason_as_a_normal_result() {
    let app = spawn_app().await;
    let client = http_client(&app, &app.agent().await).await;
    let bob = person_decides(
        app.base.clone(),
        app.human("bob@example.com").await,
        "deny",
        "not during the freeze",
    );
    let r = call(&client, "request_approval", request_args(30)).await;
    bob.await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let o = outcome(&r);
    assert_eq!(o["status"], "denied");
    assert_eq!(o["decided_by"], "user:bob@example.com");
    assert!(
        text(&r).starts_with("denied by user:bob@example.com: \"not during the freeze\""),
        "{}",
        text(&r)
    );
    assert!(text(&r).contains("do not proceed"), "{}", text(&r));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn request_approval_answers_pending_when_the_wait_runs_out_and_wait_for_approval_picks_it_up()
{
    let app = spawn_app().await;
    let client = http_client(&app, &app.agent().await).await;
    let started = std::time::Instant::now();
    let r = call(&client, "request_approval", request_args(1)).await;
    let o = outcome(&r);
    assert_eq!(o["status"], "pending");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    let id = o["id"].as_str().unwrap().to_string();
    assert!(
        text(&r).contains(&format!("call wait_for_approval with id {id}")),
        "{}",
        text(&r)
    );
    // Bob approves later; the agent's next wait sees it.
    let bob = person_decides(
        app.base.clone(),
        app.human("bob@example.com").await,
        "approve",
        "ok now",
    );
    let r = call(
        &client,
        "wait_for_approval",
        json!({ "id": id, "wait_seconds": 30 }),
    )
    .await;
    bob.await.unwrap();
    assert_eq!(outcome(&r)["status"], "approved");
    let r = call(&client, "get_approval", json!({ "id": id })).await;
    assert_eq!(outcome(&r)["status"], "approved");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_policy_allow_answers_approved_at_once_without_waiting() {
    let app = crate::helpers::spawn_with_policy(
        "rules:\n  - name: reads\n    action: db.read\n    effect: allow\n",
    )
    .await;
    let client = http_client(&app, &app.agent().await).await;
    let r = call(
        &client,
        "request_approval",
        json!({ "action": "db.read", "resource": "prod/customers", "summary": "Count rows" }),
    )
    .await;
    let o = outcome(&r);
    assert_eq!(o["status"], "approved");
    assert_eq!(o["decided_by"], "policy:reads");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_invalid_argument_is_a_tool_error_naming_the_field_and_creates_nothing() {
    let app = spawn_app().await;
    let client = http_client(&app, &app.agent().await).await;
    let mut args = request_args(0);
    args["risk"] = json!("extreme");
    let r = call(&client, "request_approval", args).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("risk"), "{}", text(&r));
    assert!(text(&r).contains("NOT an approval"), "{}", text(&r));

    let r = call(
        &client,
        "request_approval",
        json!({ "action": "db.export", "resource": "prod/customers" }),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("summary"), "{}", text(&r));

    let mut args = request_args(0);
    args["callback_url"] = json!("https://example.com/hook");
    let r = call(&client, "request_approval", args).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("callback_url"), "{}", text(&r));

    let r = call(&client, "wait_for_approval", json!({ "id": "not-a-uuid" })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("id"), "{}", text(&r));
    assert_eq!(app.count("approval_requests").await, 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_same_idempotency_key_twice_is_one_request_and_with_other_content_is_refused() {
    let app = spawn_app().await;
    let client = http_client(&app, &app.agent().await).await;
    let mut args = request_args(0);
    args["idempotency_key"] = json!("export-2026-q4");
    let first = outcome(&call(&client, "request_approval", args.clone()).await);
    let again = outcome(&call(&client, "request_approval", args.clone()).await);
    assert_eq!(first["id"], again["id"]);
    assert_eq!(app.count("approval_requests").await, 1);
    args["summary"] = json!("Something else entirely");
    let r = call(&client, "request_approval", args).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("already used"), "{}", text(&r));
    assert_eq!(app.count("approval_requests").await, 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_agent_cannot_read_or_list_another_agents_requests() {
    let app = spawn_app().await;
    let theirs = app.create_default(&app.agent().await).await;
    let other = app.key("agent:other-bot", None, "request").await;
    let client = http_client(&app, &other).await;
    let r = call(&client, "get_approval", json!({ "id": theirs["id"] })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        text(&r).contains("no approval request has id"),
        "{}",
        text(&r)
    );
    let r = call(
        &client,
        "wait_for_approval",
        json!({ "id": theirs["id"], "wait_seconds": 5 }),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    let r = call(&client, "list_approvals", json!({})).await;
    assert_eq!(outcome(&r)["items"], json!([]));
    let mine = outcome(&call(&client, "request_approval", request_args(0)).await);
    let r = call(&client, "list_approvals", json!({ "status": "pending" })).await;
    let items = outcome(&r)["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items[0]["id"], mine["id"]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn mcp_without_a_valid_key_is_a_401_problem_and_without_the_request_scope_a_403() {
    let app = spawn_app().await;
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }
    });
    let post = |token: Option<String>| {
        let mut req = app
            .client
            .post(app.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for token in [None, Some("cs_not_a_key".to_string())] {
        let res = post(token).await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let reader = app.key("user:carol@example.com", None, "read,decide").await;
    let res = post(Some(reader)).await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = post(Some(app.agent().await)).await.unwrap();
    assert_eq!(res.status(), 200);
}
