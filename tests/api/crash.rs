//! Kills the real binary with SIGKILL in the middle of load and checks that
//! everything it acknowledged survived, and that the chain still verifies.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::helpers::export_request;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_countersign")
}

fn cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn start(dir: &Path) -> (crate::helpers::ChildGuard, String) {
    crate::helpers::start_binary(dir, &[])
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_when_the_process_is_killed_mid_load() {
    countersign::startup::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let agent = cli(
        dir.path(),
        &[
            "keys",
            "create",
            "--principal",
            "agent:loader",
            "--owner",
            "user:owner@example.com",
            "--scopes",
            "request,read",
        ],
    );
    let humans: Vec<(String, String)> = (0..4)
        .map(|i| {
            let who = format!("user:approver{i}@example.com");
            (
                cli(
                    dir.path(),
                    &[
                        "keys",
                        "create",
                        "--principal",
                        &who,
                        "--scopes",
                        "decide,read",
                    ],
                ),
                who,
            )
        })
        .collect();
    let (mut child, base) = start(dir.path());
    let client = reqwest::Client::new();
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let decided: Arc<Mutex<Vec<(String, String)>>> = Arc::default();

    // 16 clients create requests and decide on acknowledged ones until the
    // server dies; each records only what was acknowledged.
    let mut tasks = vec![];
    for worker in 0..16 {
        let (client, base, agent) = (client.clone(), base.clone(), agent.clone());
        let (created, decided) = (created.clone(), decided.clone());
        let (token, who) = humans[worker % humans.len()].clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..400 {
                let res = client
                    .post(format!("{base}/v1/approvals"))
                    .bearer_auth(&agent)
                    .json(&export_request())
                    .send()
                    .await;
                let Ok(res) = res else { break };
                if res.status() != 201 {
                    continue;
                }
                let Ok(v) = res.json::<Value>().await else {
                    break;
                };
                let id = v["id"].as_str().unwrap().to_string();
                created.lock().unwrap().push(id.clone());
                let res = client
                    .post(format!("{base}/v1/approvals/{id}/decisions"))
                    .bearer_auth(&token)
                    .json(&json!({ "verdict": "approve" }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        decided.lock().unwrap().push((id, who.clone()))
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    // Kill once a fair amount has been acknowledged, while load continues.
    for _ in 0..600 {
        if decided.lock().unwrap().len() >= 150 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let created = created.lock().unwrap().clone();
    let decided = decided.lock().unwrap().clone();
    assert!(created.len() >= 150, "load ran: {} created", created.len());

    let (mut child, base) = start(dir.path());
    let reader = &agent;
    let mut seen = HashSet::new();
    for id in &created {
        let res = client
            .get(format!("{base}/v1/approvals/{id}"))
            .bearer_auth(reader)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged request {id} survived");
        seen.insert(id.clone());
    }
    for (id, who) in &decided {
        let v: Value = client
            .get(format!("{base}/v1/approvals/{id}"))
            .bearer_auth(reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            v["status"], "approved",
            "acknowledged decision on {id} survived"
        );
        assert_eq!(v["approvals"][0]["principal"], who.as_str());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let verify: Value = serde_json::from_str(&cli(dir.path(), &["audit", "verify"])).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    eprintln!(
        "crash test: {} created and {} decided before SIGKILL; all present; {} events verify",
        created.len(),
        decided.len(),
        verify["events"]
    );
}
