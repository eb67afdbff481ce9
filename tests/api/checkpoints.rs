//! Checkpoints leave the box: each signed chain head is appended to a file
//! outside the database, and `audit verify --checkpoints` catches a trail
//! cut back to an earlier signed head, which the chain alone cannot.

use serde_json::Value;

use crate::helpers::*;
use crate::tamper::{stdout_json, tamper};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the file has a line for every signature in the database.
async fn settled(app: &TestApp, path: &std::path::Path) -> Vec<Value> {
    for _ in 0..100 {
        let l = lines(path);
        if l.len() as i64 == app.count("audit_signatures").await {
            return l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("checkpoint file never caught up: {:?}", lines(path));
}

async fn app_with_checkpoints() -> (TestApp, std::path::PathBuf) {
    let elsewhere = tempfile::tempdir().unwrap().keep();
    let path = elsewhere.join("checkpoints.jsonl");
    let p = path.clone();
    let app = spawn_with(move |s| s.audit_checkpoints = Some(p)).await;
    (app, path)
}

#[tokio::test]
async fn the_checkpoint_file_gets_one_line_per_signed_head() {
    let (app, path) = app_with_checkpoints().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "approve", None).await;
    let l = settled(&app, &path).await;
    assert!(l.len() >= 4, "{l:?}");
    let sigs = countersign::store::trail::signed_heads(&app.app.store)
        .await
        .unwrap();
    for (line, head) in l.iter().zip(&sigs) {
        assert_eq!(line["seq"], head.seq);
        assert_eq!(line["hash"], head.hash);
        assert_eq!(line["key_id"], app.app.store.signer.public_hex());
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(line["signature"].as_str().unwrap().len(), 128);
    }
    let out = app
        .cli(&["audit", "verify", "--checkpoints", path.to_str().unwrap()])
        .await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["checkpoints_checked"], l.len());
}

#[tokio::test]
async fn a_tail_cut_back_to_a_signed_head_fails_verify_with_checkpoints_naming_it() {
    if !crate::helpers::sqlite_file_at_hand(
        "a_tail_cut_back_to_a_signed_head_fails_verify_with_checkpoints_naming_it",
    ) {
        return;
    }
    let (app, path) = app_with_checkpoints().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before_decision: i64 = app.count("audit_events").await;
    app.decide(&bob, &id, "deny", Some("no")).await;
    let l = settled(&app, &path).await;
    let last_seq = l.last().unwrap()["seq"].as_i64().unwrap();
    assert!(last_seq > before_decision);
    let auditor = app.key("user:carol@example.com", None, "audit").await;
    settled(&app, &path).await;
    let api: Value = app
        .get(&auditor, "/v1/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["checkpoint"]["seq"], api["head_seq"], "{api}");
    let stopped = app.stop().await;

    // Back to the signed head before the decision: the chain alone still verifies.
    let db = stopped.path().join("countersign.db");
    tamper(
        &db,
        &[
            &format!("DELETE FROM audit_events WHERE seq > {before_decision}"),
            &format!("DELETE FROM audit_signatures WHERE seq > {before_decision}"),
            "DELETE FROM decisions",
            // A careful attacker tidies the derived tables as well.
            "DELETE FROM audit_facets WHERE facet = 'kind' AND value NOT IN (SELECT kind FROM audit_events)",
            "DELETE FROM api_keys WHERE principal = 'user:carol@example.com'",
            &format!(
                "UPDATE approval_requests SET status = 'pending', decided_at = NULL, decided_by = NULL, final_reason = NULL WHERE id = '{id}'"
            ),
        ],
    )
    .await;
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .arg("--db")
            .arg(&db)
            .args(args)
            .env(
                "COUNTERSIGN_SIGNING_KEY",
                stopped.path().join("audit-key.pem"),
            )
            .env_remove("COUNTERSIGN_CONFIG")
            .output()
            .unwrap()
    };
    let plain = cli(&["audit", "verify"]);
    assert_eq!(plain.status.code(), Some(0), "{}", stdout_json(&plain));

    let out = cli(&["audit", "verify", "--checkpoints", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let v = stdout_json(&out);
    assert_eq!(v["ok"], false);
    let first_lost = l
        .iter()
        .find(|c| c["seq"].as_i64().unwrap() > before_decision)
        .unwrap();
    assert_eq!(v["checkpoint"]["seq"], first_lost["seq"], "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("checkpoint at seq {}", first_lost["seq"])),
        "{v}"
    );

    // The same on an export of the cut trail.
    let export = stopped.path().join("cut.ndjson");
    let e = cli(&["audit", "export", "--output", export.to_str().unwrap()]);
    assert!(e.status.success());
    let out = cli(&[
        "audit",
        "verify",
        "--file",
        export.to_str().unwrap(),
        "--checkpoints",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout_json(&out));
    assert_eq!(stdout_json(&out)["checkpoint"]["seq"], first_lost["seq"]);
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_refused() {
    let (app, path) = app_with_checkpoints().await;
    app.agent().await;
    let mut l = settled(&app, &path).await;
    l[0]["signature"] = Value::String("00".repeat(64));
    let forged = app.dir.path().join("forged.jsonl");
    std::fs::write(
        &forged,
        l.iter().map(|c| c.to_string() + "\n").collect::<String>(),
    )
    .unwrap();
    let out = app
        .cli(&["audit", "verify", "--checkpoints", forged.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", stdout_json(&out));
}

#[tokio::test]
async fn the_signing_key_can_come_from_the_environment_and_never_touches_the_database_disk() {
    let elsewhere = tempfile::tempdir().unwrap();
    let key_file = elsewhere.path().join("key.pem");
    let signer = countersign::store::audit::Signer::load_or_create(&key_file).unwrap();
    let pem = std::fs::read_to_string(&key_file).unwrap();
    let app = spawn_with(move |s| {
        s.signing_key_pem = Some(countersign::config::Secret::new(pem));
    })
    .await;
    assert_eq!(app.app.store.signer.public_hex(), signer.public_hex());
    let agent = app.agent().await;
    app.create_default(&agent).await;
    assert!(!app.dir.path().join("audit-key.pem").exists());
    let public = app.dir.path().join("public.pem");
    std::fs::write(&public, signer.public_pem()).unwrap();
    let out = app
        .cli(&["audit", "verify", "--public-key", public.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout_json(&out));
}
