//! `countersign request`: the exit code says how the request ended.

use serde_json::Value;

use crate::helpers::{spawn_app, spawn_with_policy};
use crate::support::*;

fn ask<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "request",
        "--action",
        "deploy",
        "--resource",
        "prod/web",
        "--summary",
        "Deploy web 1.4.2",
        "--details",
        r#"{"version":"1.4.2","commit":"abc123"}"#,
    ];
    v.extend_from_slice(extra);
    v
}

fn printed(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", stderr(out)))
}

#[tokio::test]
async fn request_exits_0_and_prints_the_request_when_a_person_approves() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let watcher = reader(&app).await;
    let child = start(agent_cmd(&app.base, &agent, &ask(&["--wait", "5m"])), "").await;
    let asked = pending_request(&app, &watcher).await;
    assert_eq!(asked["details"]["commit"], "abc123");
    app.decide(&bob, asked["id"].as_str().unwrap(), "approve", None)
        .await;
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(printed(&out)["status"], "approved");
}

#[tokio::test]
async fn request_exits_1_when_a_person_denies() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let watcher = reader(&app).await;
    let child = start(agent_cmd(&app.base, &agent, &ask(&[])), "").await;
    let id = pending_request(&app, &watcher).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "deny", Some("freeze week")).await;
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(printed(&out)["status"], "denied");
    assert!(stderr(&out).contains("freeze week"));
}

#[tokio::test]
async fn request_exits_2_when_the_request_expires_or_is_cancelled() {
    let app = spawn_with_policy(
        "rules:\n  - name: quick\n    action: deploy\n    effect: require_approval\n    expires_in: 1s\ndefault:\n  effect: require_approval\n  expires_in: 10m\n",
    )
    .await;
    let agent = app.agent().await;
    let out = run(agent_cmd(&app.base, &agent, &ask(&[])), "").await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(printed(&out)["status"], "expired");

    let watcher = reader(&app).await;
    let mut args = ask(&[]);
    args[2] = "deploy.slow";
    let child = start(agent_cmd(&app.base, &agent, &args), "").await;
    let id = pending_request(&app, &watcher).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .post_json(
            &agent,
            &format!("/v1/approvals/{id}/cancel"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(printed(&out)["status"], "cancelled");
}

#[tokio::test]
async fn request_exits_3_when_the_wait_runs_out_and_a_retry_with_the_same_key_waits_on_the_same_request()
 {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let args = ask(&["--wait", "1s", "--idempotency-key", "ci-run-77"]);
    let out = run(agent_cmd(&app.base, &agent, &args), "").await;
    assert_eq!(out.status.code(), Some(3));
    let first = printed(&out);
    assert_eq!(first["status"], "pending");
    app.decide(&bob, first["id"].as_str().unwrap(), "approve", None)
        .await;
    let out = run(agent_cmd(&app.base, &agent, &args), "").await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(printed(&out)["id"], first["id"]);
}

#[tokio::test]
async fn request_exits_4_on_any_error() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    // Bad key, unreachable service, details that are not an object, a field the API refuses.
    let out = run(agent_cmd(&app.base, "cs_nope", &ask(&[])), "").await;
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let out = run(agent_cmd("http://127.0.0.1:1", &agent, &ask(&[])), "").await;
    assert_eq!(out.status.code(), Some(4));
    let mut bad = ask(&[]);
    bad[8] = "[1,2]";
    let out = run(agent_cmd(&app.base, &agent, &bad), "").await;
    assert_eq!(out.status.code(), Some(4));
    let out = run(
        agent_cmd(&app.base, &agent, &ask(&["--risk", "extreme"])),
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("422"), "{}", stderr(&out));
}
