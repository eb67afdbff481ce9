//! The real binary under signals: SIGHUP reloads the policy (a bad file
//! keeps the old one), SIGTERM shuts down cleanly.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::helpers::export_request;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_countersign")
}

fn start(dir: &Path, policy: &Path) -> (crate::helpers::ChildGuard, String) {
    crate::helpers::start_binary(dir, &["--policy", policy.to_str().unwrap()])
}

fn signal(child: &std::process::Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

async fn rule_for(client: &reqwest::Client, base: &str, token: &str) -> String {
    let res = client
        .post(format!("{base}/v1/approvals"))
        .bearer_auth(token)
        .json(&export_request())
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    v["policy"]["rule"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sighup_reloads_the_policy_and_a_bad_file_keeps_the_old_one() {
    countersign::startup::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: first\n    action: db.export\n    effect: require_approval\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .current_dir(dir.path())
        .args([
            "keys",
            "create",
            "--principal",
            "agent:a",
            "--scopes",
            "request",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (mut child, base) = start(dir.path(), &policy);
    let client = reqwest::Client::new();
    assert_eq!(rule_for(&client, &base, &token).await, "first");

    std::fs::write(
        &policy,
        "rules:\n  - name: second\n    action: db.export\n    effect: require_approval\n",
    )
    .unwrap();
    signal(&child, "-HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if rule_for(&client, &base, &token).await == "second" {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the new policy is in force after SIGHUP");

    std::fs::write(&policy, "rules: [this is not a rule]\n").unwrap();
    signal(&child, "-HUP");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        rule_for(&client, &base, &token).await,
        "second",
        "a bad file keeps the policy in force"
    );

    // A long-poll in flight answers at once on SIGTERM instead of holding
    // the shutdown for its whole wait.
    let id = {
        let res = client
            .post(format!("{base}/v1/approvals"))
            .bearer_auth(&token)
            .json(&export_request())
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let poll = tokio::spawn({
        let (client, url, token) = (
            client.clone(),
            format!("{base}/v1/approvals/{id}?wait=60"),
            token.clone(),
        );
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    signal(&child, "-TERM");
    let polled = tokio::time::timeout(std::time::Duration::from_secs(30), poll)
        .await
        .expect("the long-poll answered before its 60 s")
        .unwrap();
    assert_eq!(polled["status"], "pending");
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}");

    let export = Command::new(bin())
        .current_dir(dir.path())
        .args(["audit", "export"])
        .output()
        .unwrap();
    let text = String::from_utf8(export.stdout).unwrap();
    assert!(text.contains("\"policy.reloaded\""));
    assert!(text.contains("\"policy.reload_failed\""));
}
