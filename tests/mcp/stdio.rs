//! MCP over stdio: the real `countersign mcp` binary, launched the way an
//! MCP client launches a server, bridging to the service's `/mcp`.

use serde_json::json;

use crate::helpers::spawn_app;
use crate::support::{call, outcome, person_decides, request_args, stdio_client, text};

#[tokio::test]
async fn countersign_mcp_lists_the_tools_and_sees_approved_when_a_person_approves() {
    let app = spawn_app().await;
    let client = stdio_client(&app.base, Some(&app.agent().await)).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 4);
    assert!(tools.iter().any(|t| t.name == "request_approval"));
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
    assert_eq!(text(&r), "approved by user:bob@example.com: \"checked\"");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn countersign_mcp_sees_denied_and_a_wait_that_runs_out_as_pending() {
    let app = spawn_app().await;
    let client = stdio_client(&app.base, Some(&app.agent().await)).await;
    let r = call(&client, "request_approval", request_args(1)).await;
    let o = outcome(&r);
    assert_eq!(o["status"], "pending");
    let bob = person_decides(
        app.base.clone(),
        app.human("bob@example.com").await,
        "deny",
        "no",
    );
    let r = call(
        &client,
        "wait_for_approval",
        json!({ "id": o["id"], "wait_seconds": 30 }),
    )
    .await;
    bob.await.unwrap();
    assert_eq!(outcome(&r)["status"], "denied");
    assert!(text(&r).contains("do not proceed"), "{}", text(&r));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn countersign_mcp_answers_not_approved_when_the_service_cannot_be_reached() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = stdio_client(&format!("http://127.0.0.1:{port}"), Some("cs_whatever")).await;
    let r = call(&client, "request_approval", request_args(0)).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("NOT an approval"), "{}", text(&r));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn countersign_mcp_answers_not_approved_with_a_bad_token_or_none() {
    let app = spawn_app().await;
    for token in [Some("cs_not_a_real_key"), None] {
        let client = stdio_client(&app.base, token).await;
        let r = call(&client, "request_approval", request_args(0)).await;
        assert_eq!(r.is_error, Some(true), "{}", text(&r));
        assert!(text(&r).contains("NOT an approval"), "{}", text(&r));
        client.cancel().await.unwrap();
    }
    assert_eq!(app.count("approval_requests").await, 0);
}
