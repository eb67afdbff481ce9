//! Running the binary against a test service, and waiting for the request
//! it makes to show up (polling the API, never a timing assertion).

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::helpers::TestApp;

/// The binary with only what an agent's environment would hold.
pub fn agent_cmd(base: &str, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_countersign"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("COUNTERSIGN_URL", base)
        .env("COUNTERSIGN_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `cmd` and writes `input` to its stdin.
pub async fn start(mut cmd: Command, input: &str) -> Child {
    let mut child = cmd.spawn().expect("the binary starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    child
}

pub async fn finish(child: Child) -> Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the binary finishes")
        .unwrap()
}

pub async fn run(cmd: Command, input: &str) -> Output {
    finish(start(cmd, input).await).await
}

/// The id of the one pending request, once the binary has made it.
pub async fn pending_request(app: &TestApp, reader: &str) -> Value {
    for _ in 0..600 {
        let page: Value = app
            .get(reader, "/v1/approvals?status=pending")
            .await
            .json()
            .await
            .unwrap();
        if let Some(first) = page["items"].as_array().and_then(|a| a.first()) {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending request appeared");
}

/// Claude Code's hook answer on stdout.
pub fn hook_answer(out: &Output) -> (String, String) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "the hook must always exit 0; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hook printed no JSON ({e}): {:?} / {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let h = &v["hookSpecificOutput"];
    assert_eq!(h["hookEventName"], "PreToolUse", "{v}");
    (
        h["permissionDecision"].as_str().unwrap().to_string(),
        h["permissionDecisionReason"].as_str().unwrap().to_string(),
    )
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A key that may read every request, for watching what the binary asked.
pub async fn reader(app: &TestApp) -> String {
    app.key("service:watcher", None, "read").await
}
