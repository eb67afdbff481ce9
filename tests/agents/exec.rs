//! `countersign exec -- CMD`: the command runs only after approval, and
//! only with a permit for this very argv.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, spawn_app, spawn_with_policy};
use crate::support::*;

fn guarded(dir: &Path, marker: &Path) -> tokio::process::Command {
    let _ = dir;
    let m = marker.to_str().unwrap().to_string();
    let args: Vec<String> = [
        "exec",
        "--action",
        "deploy",
        "--resource",
        "prod/web",
        "--summary",
        "Touch the marker",
        "--",
        "touch",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([m])
    .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = agent_cmd("", "", &refs);
    cmd.current_dir(dir);
    cmd
}

fn exec_cmd(app: &TestApp, token: &str, dir: &Path, marker: &Path) -> tokio::process::Command {
    let mut cmd = guarded(dir, marker);
    cmd.env("COUNTERSIGN_URL", &app.base)
        .env("COUNTERSIGN_TOKEN", token);
    cmd
}

fn workdir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(d.path()).unwrap();
    let marker = dir.join("marker");
    (d, dir, marker)
}

#[tokio::test]
async fn exec_runs_the_command_only_after_approval_with_the_argv_shown_to_approvers() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let watcher = reader(&app).await;
    let (_d, dir, marker) = workdir();
    let child = start(exec_cmd(&app, &agent, &dir, &marker), "").await;
    let asked = pending_request(&app, &watcher).await;
    assert_eq!(
        asked["details"]["argv"],
        json!(["touch", marker.to_str().unwrap()])
    );
    assert_eq!(asked["details"]["cwd"], dir.to_str().unwrap());
    assert_eq!(asked["details"]["env"], json!(["PATH"]));
    assert!(
        !marker.exists(),
        "nothing runs while the request is pending"
    );
    app.decide(&bob, asked["id"].as_str().unwrap(), "approve", None)
        .await;
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(marker.exists());
    let kinds = app.audit_kinds(asked["id"].as_str().unwrap()).await;
    assert!(
        kinds.contains(&"permit.issued".to_string())
            && kinds.contains(&"permit.redeemed".to_string()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn exec_exits_with_the_commands_own_exit_code() {
    let app = spawn_with_policy(
        "rules:\n  - name: ok\n    action: deploy\n    effect: allow\ndefault:\n  effect: deny\n",
    )
    .await;
    let agent = app.agent().await;
    let (_d, dir, _) = workdir();
    let mut cmd = agent_cmd(
        &app.base,
        &agent,
        &[
            "exec",
            "--action",
            "deploy",
            "--resource",
            "prod/web",
            "--",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    cmd.current_dir(&dir);
    let out = run(cmd, "").await;
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
}

#[tokio::test]
async fn exec_never_runs_the_command_when_denied() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let watcher = reader(&app).await;
    let (_d, dir, marker) = workdir();
    let child = start(exec_cmd(&app, &agent, &dir, &marker), "").await;
    let id = pending_request(&app, &watcher).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "deny", Some("no")).await;
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not run"), "{}", stderr(&out));
    assert!(!marker.exists());
}

#[tokio::test]
async fn exec_never_runs_the_command_when_the_request_expires() {
    let app = spawn_with_policy("rules:\n  - name: quick\n    action: deploy\n    effect: require_approval\n    expires_in: 1s\ndefault:\n  effect: deny\n").await;
    let agent = app.agent().await;
    let (_d, dir, marker) = workdir();
    let out = run(exec_cmd(&app, &agent, &dir, &marker), "").await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!marker.exists());
}

#[tokio::test]
async fn exec_never_runs_the_command_when_the_service_is_unreachable_or_the_key_is_bad() {
    let app = spawn_app().await;
    let (_d, dir, marker) = workdir();
    let mut cmd = guarded(&dir, &marker);
    cmd.env("COUNTERSIGN_URL", "http://127.0.0.1:1")
        .env("COUNTERSIGN_TOKEN", "cs_x");
    let out = run(cmd, "").await;
    assert_eq!(out.status.code(), Some(4));
    let out = run(exec_cmd(&app, "cs_not_a_key", &dir, &marker), "").await;
    assert_eq!(out.status.code(), Some(4));
    assert!(!marker.exists());
}

/// A service (or anything between) that answers "approved" and hands over
/// a real, valid permit, but one earned by another command: exec checks
/// the permit's payload hash against the argv it is about to run.
#[tokio::test]
async fn exec_never_runs_the_command_on_a_permit_for_other_arguments() {
    let app = spawn_with_policy(
        "rules:\n  - name: ok\n    action: deploy\n    effect: allow\ndefault:\n  effect: deny\n",
    )
    .await;
    let agent = app.agent().await;
    // The genuine permit of an approved `deploy prod/web` with other details.
    let other = app
        .create(&agent, json!({"action": "deploy", "resource": "prod/web", "summary": "Touch the marker", "details": {"argv": ["true"]}}))
        .await;
    let id = other["id"].as_str().unwrap();
    let permit: Value = app
        .get(&agent, &format!("/v1/approvals/{id}/permit"))
        .await
        .json()
        .await
        .unwrap();
    let jwks: Value = app
        .get(&agent, "/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();

    let (_d, dir, marker) = workdir();
    // What exec will hash: its own argv, cwd and env names.
    let details: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "argv": ["touch", marker.to_str().unwrap()], "cwd": dir.to_str().unwrap(), "env": ["PATH"],
    }))
    .unwrap();
    let content = countersign::domain::RequestContent {
        action: countersign::domain::Action::parse("deploy").unwrap(),
        resource: "prod/web".into(),
        summary: "Touch the marker".into(),
        justification: None,
        details,
        risk: countersign::domain::Risk::Medium,
        on_behalf_of: None,
    };
    let requester = countersign::domain::Principal::parse("agent:deploy-bot").unwrap();
    let mut lie = other.clone();
    lie["payload_sha256"] = json!(content.payload_hash(&requester).as_str());

    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/approvals"))
        .respond_with(ResponseTemplate::new(201).set_body_json(&lie))
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/approvals/[^/]+/permit$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&permit))
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&jwks))
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/permits/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&fake)
        .await;

    let mut cmd = guarded(&dir, &marker);
    cmd.env("COUNTERSIGN_URL", fake.uri())
        .env("COUNTERSIGN_TOKEN", &agent);
    let out = run(cmd, "").await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("payload_sha256"), "{}", stderr(&out));
    assert!(!marker.exists());
}
