//! `countersign hook claude-code`, fed Claude Code's PreToolUse JSON.

use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_with_policy};
use crate::support::*;

fn bash(command: &str) -> String {
    json!({
        "session_id": "sess-1", "transcript_path": "/tmp/t.jsonl", "cwd": "/home/olivia/project",
        "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Bash",
        "tool_input": { "command": command, "description": "does a thing" },
        "tool_use_id": format!("toolu_{}", uuid::Uuid::now_v7().simple()),
    })
    .to_string()
}

const HOOK: &[&str] = &["hook", "claude-code"];

#[tokio::test]
async fn the_hook_allows_a_tool_call_once_a_person_approves_it() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let watcher = reader(&app).await;
    let child = start(
        agent_cmd(&app.base, &agent, HOOK),
        &bash("kubectl  delete pod web-1 -n prod"),
    )
    .await;

    let asked = pending_request(&app, &watcher).await;
    assert_eq!(asked["action"], "claude-code.Bash");
    assert_eq!(asked["resource"], "kubectl delete pod web-1 -n prod");
    assert_eq!(
        asked["details"]["command"],
        "kubectl  delete pod web-1 -n prod"
    );
    let id = asked["id"].as_str().unwrap();
    assert_eq!(app.decide(&bob, id, "approve", None).await.status(), 200);

    let (decision, reason) = hook_answer(&finish(child).await);
    assert_eq!(decision, "allow");
    assert!(
        reason.contains("approved by user:bob@example.com"),
        "{reason}"
    );
}

#[tokio::test]
async fn the_hook_denies_with_who_denied_and_their_comment() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let watcher = reader(&app).await;
    let child = start(
        agent_cmd(&app.base, &agent, HOOK),
        &bash("rm -rf /var/lib/postgres"),
    )
    .await;
    let id = pending_request(&app, &watcher).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "deny", Some("not on prod")).await;

    let (decision, reason) = hook_answer(&finish(child).await);
    assert_eq!(decision, "deny");
    assert!(
        reason.contains("denied by user:bob@example.com") && reason.contains("not on prod"),
        "{reason}"
    );
}

#[tokio::test]
async fn the_hook_denies_when_the_request_expires() {
    let app = spawn_with_policy(
        "rules:\n  - name: quick\n    action: \"claude-code.*\"\n    effect: require_approval\n    expires_in: 1s\ndefault:\n  effect: deny\n",
    )
    .await;
    let agent = app.agent().await;
    let out = run(agent_cmd(&app.base, &agent, HOOK), &bash("terraform apply")).await;
    let (decision, reason) = hook_answer(&out);
    assert_eq!(decision, "deny");
    assert!(reason.contains("expired"), "{reason}");
}

/// The policy the README shows (examples/claude-code-policy.yaml): reads
/// are allowed, `rm *`, `kubectl *` and `terraform apply*` need the SRE
/// group, everything else one person. `rm *` must match commands whose
/// arguments hold `/`.
const README_POLICY: &str = include_str!("../../examples/claude-code-policy.yaml");

#[tokio::test]
async fn the_hook_allows_at_once_what_policy_allows_and_asks_for_what_it_does_not() {
    let app = spawn_with_policy(README_POLICY).await;
    let agent = app.agent().await;
    let read = json!({
        "session_id": "s", "cwd": "/home/olivia/project", "hook_event_name": "PreToolUse",
        "tool_name": "Read", "tool_input": { "file_path": "src/../README.md" }, "tool_use_id": "toolu_read",
    });
    let (decision, reason) =
        hook_answer(&run(agent_cmd(&app.base, &agent, HOOK), &read.to_string()).await);
    assert_eq!(decision, "allow");
    assert!(reason.contains("claude-reads"), "{reason}");

    // Pending, so a short --wait runs out, and running out denies.
    let short = ["hook", "claude-code", "--wait", "1s"];
    for cmd in [
        "rm -rf /tmp/x",
        "kubectl delete ns prod",
        "terraform apply -auto-approve",
        "git status",
    ] {
        let (decision, reason) =
            hook_answer(&run(agent_cmd(&app.base, &agent, &short), &bash(cmd)).await);
        assert_eq!(decision, "deny");
        assert!(reason.contains("no decision within 1s"), "{reason}");
    }
    let watcher = reader(&app).await;
    let list: Value = app
        .get(&watcher, "/v1/approvals?action=claude-code.Bash")
        .await
        .json()
        .await
        .unwrap();
    let rule_of = |resource: &str| {
        let r = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == resource)
            .expect("asked");
        assert_eq!(
            r["status"], "cancelled",
            "the hook withdraws what it no longer waits for"
        );
        r["policy"]["rule"].as_str().unwrap().to_string()
    };
    assert_eq!(rule_of("rm -rf %2Ftmp%2Fx"), "claude-dangerous-bash");
    assert_eq!(rule_of("kubectl delete ns prod"), "claude-dangerous-bash");
    assert_eq!(
        rule_of("terraform apply -auto-approve"),
        "claude-dangerous-bash"
    );
    assert_eq!(rule_of("git status"), "default");
}

#[tokio::test]
async fn with_defer_allowed_an_approval_prints_nothing_but_a_denial_still_denies() {
    let app = spawn_with_policy(README_POLICY).await;
    let agent = app.agent().await;
    let grep = json!({
        "session_id": "s", "cwd": "/p", "hook_event_name": "PreToolUse",
        "tool_name": "Grep", "tool_input": { "pattern": "x" }, "tool_use_id": "toolu_grep",
    });
    let out = run(
        agent_cmd(
            &app.base,
            &agent,
            &["hook", "claude-code", "--defer-allowed"],
        ),
        &grep.to_string(),
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(
        agent_cmd(
            &app.base,
            &agent,
            &["hook", "claude-code", "--defer-allowed", "--wait", "1s"],
        ),
        &bash("rm x"),
    )
    .await;
    assert_eq!(hook_answer(&out).0, "deny");
}

#[tokio::test]
async fn the_hook_denies_when_the_service_is_unreachable() {
    // A port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let (decision, reason) =
        hook_answer(&run(agent_cmd(&base, "cs_whatever", HOOK), &bash("ls")).await);
    assert_eq!(decision, "deny");
    assert!(
        reason.contains("cannot connect") && reason.contains("not approved"),
        "{reason}"
    );
}

#[tokio::test]
async fn the_hook_denies_with_a_bad_token_or_none() {
    let app = spawn_app().await;
    let (decision, reason) =
        hook_answer(&run(agent_cmd(&app.base, "cs_not_a_key", HOOK), &bash("ls")).await);
    assert_eq!(decision, "deny");
    assert!(reason.contains("401"), "{reason}");
    let mut cmd = agent_cmd(&app.base, "", HOOK);
    cmd.env_remove("COUNTERSIGN_TOKEN");
    let (decision, reason) = hook_answer(&run(cmd, &bash("ls")).await);
    assert_eq!(decision, "deny");
    assert!(reason.contains("COUNTERSIGN_TOKEN"), "{reason}");
}

#[tokio::test]
async fn the_hook_denies_malformed_input_and_asks_nothing() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let cases = [
        "".to_string(),
        "not json".to_string(),
        "[]".to_string(),
        json!({"session_id": "s", "cwd": "/", "hook_event_name": "PreToolUse", "tool_name": "Bash"}).to_string(),
        json!({"session_id": "s", "cwd": "/", "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": "ls"}).to_string(),
        json!({"session_id": "s", "cwd": "/", "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {}}).to_string(),
        json!({"session_id": "s", "cwd": "/", "hook_event_name": "PreToolUse", "tool_name": "Write", "tool_input": {"content": "x"}}).to_string(),
        json!({"session_id": "s", "cwd": "/", "hook_event_name": "PostToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"}}).to_string(),
        json!({"session_id": "s", "cwd": "/", "hook_event_name": "PreToolUse", "tool_name": "no such tool!", "tool_input": {}}).to_string(),
    ];
    for input in cases {
        let (decision, _) = hook_answer(&run(agent_cmd(&app.base, &agent, HOOK), &input).await);
        assert_eq!(decision, "deny", "input {input:?}");
    }
    assert_eq!(app.count("approval_requests").await, 0);
}

#[tokio::test]
async fn the_hook_denies_when_its_own_arguments_are_wrong() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let out = run(
        agent_cmd(
            &app.base,
            &agent,
            &["hook", "claude-code", "--wait", "soon"],
        ),
        &bash("ls"),
    )
    .await;
    let (decision, reason) = hook_answer(&out);
    assert_eq!(decision, "deny");
    assert!(reason.contains("misconfigured"), "{reason}");
}

#[tokio::test]
async fn a_huge_write_is_still_asked_about_with_its_content_shortened_and_hashed() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let watcher = reader(&app).await;
    let bob = app.human("bob@example.com").await;
    let input = json!({
        "session_id": "s", "cwd": "/home/o/p", "hook_event_name": "PreToolUse", "tool_name": "Write",
        "tool_input": { "file_path": "/home/o/p/big file.txt", "content": "x".repeat(100_000) },
        "tool_use_id": "toolu_big",
    });
    let child = start(agent_cmd(&app.base, &agent, HOOK), &input.to_string()).await;
    let asked = pending_request(&app, &watcher).await;
    assert_eq!(asked["resource"], "home/o/p/big file.txt");
    assert_eq!(asked["details"]["content"]["bytes"], 100_000);
    app.decide(&bob, asked["id"].as_str().unwrap(), "approve", None)
        .await;
    assert_eq!(hook_answer(&finish(child).await).0, "allow");
}
