use serde_json::Value;
use sqlx::Connection;

use crate::helpers::*;
use crate::tamper::tamper;

/// A trail with a handful of events: keys, a request, a decision.
async fn app_with_history() -> TestApp {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "approve", None).await;
    app.create_default(&agent).await;
    app
}

fn verify_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("stdout: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test]
async fn an_untouched_trail_verifies() {
    let app = app_with_history().await;
    let out = app.cli(&["audit", "verify"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verify_json(&out);
    assert_eq!(v["ok"], true);
    assert!(v["events"].as_u64().unwrap() >= 8);
    assert!(v["signatures"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn the_service_refuses_to_edit_or_delete_audit_events() {
    if !crate::helpers::sqlite_file_at_hand("the_service_refuses_to_edit_or_delete_audit_events") {
        return;
    }
    let app = app_with_history().await;
    // Any writer of the file, the service's own connections included, meets
    // the append-only triggers.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db.display()))
        .await
        .unwrap();
    let err = sqlx::query("UPDATE audit_events SET actor = 'user:x@y.z' WHERE seq = 1")
        .execute(&mut conn)
        .await;
    assert!(err.unwrap_err().to_string().contains("append-only"));
    let err = sqlx::query("DELETE FROM audit_events WHERE seq = 1")
        .execute(&mut conn)
        .await;
    assert!(err.is_err());
}

#[tokio::test]
async fn verify_names_an_edited_row() {
    if !crate::helpers::sqlite_file_at_hand("verify_names_an_edited_row") {
        return;
    }
    let app = app_with_history().await;
    let dir = app.stop().await;
    let db = dir.path().join("countersign.db");
    tamper(
        &db,
        &["UPDATE audit_events SET data = '{\"verdict\":\"deny\"}' WHERE seq = 5"],
    )
    .await;
    let out = cli_in(&dir, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    let v = verify_json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_seq"], 5);
    assert!(v["reason"].as_str().unwrap().contains("edited"));
}

#[tokio::test]
async fn verify_names_a_deleted_row() {
    if !crate::helpers::sqlite_file_at_hand("verify_names_a_deleted_row") {
        return;
    }
    let app = app_with_history().await;
    let dir = app.stop().await;
    tamper(
        &dir.path().join("countersign.db"),
        &["DELETE FROM audit_events WHERE seq = 4"],
    )
    .await;
    let out = cli_in(&dir, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    let v = verify_json(&out);
    assert_eq!(v["first_bad_seq"], 4);
    assert!(v["reason"].as_str().unwrap().contains("deleted"));
}

#[tokio::test]
async fn verify_names_swapped_rows() {
    if !crate::helpers::sqlite_file_at_hand("verify_names_swapped_rows") {
        return;
    }
    let app = app_with_history().await;
    let dir = app.stop().await;
    // Swap the contents of events 4 and 5 but keep their seq numbers.
    tamper(
        &dir.path().join("countersign.db"),
        &[
            "UPDATE audit_events SET seq = -4 WHERE seq = 4",
            "UPDATE audit_events SET seq = 4 WHERE seq = 5",
            "UPDATE audit_events SET seq = 5 WHERE seq = -4",
        ],
    )
    .await;
    let out = cli_in(&dir, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(verify_json(&out)["first_bad_seq"], 4);
}

#[tokio::test]
async fn verify_notices_a_truncated_tail() {
    if !crate::helpers::sqlite_file_at_hand("verify_notices_a_truncated_tail") {
        return;
    }
    let app = app_with_history().await;
    let dir = app.stop().await;
    tamper(
        &dir.path().join("countersign.db"),
        &["DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)"],
    )
    .await;
    let out = cli_in(&dir, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        verify_json(&out)["reason"]
            .as_str()
            .unwrap()
            .contains("truncated")
    );
}

fn cli_in(dir: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("--db")
        .arg(dir.path().join("countersign.db"))
        .args(args)
        .env("COUNTERSIGN_SIGNING_KEY", dir.path().join("audit-key.pem"))
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_export_verifies_offline_with_the_public_key_and_tampering_is_caught() {
    let app = app_with_history().await;
    let dir = app.dir.path().to_path_buf();
    let key = app.cli(&["audit", "public-key"]).await;
    std::fs::write(dir.join("public.pem"), &key.stdout).unwrap();
    for format in ["ndjson", "csv"] {
        let file = dir.join(format!("export.{format}"));
        let out = app
            .cli(&[
                "audit",
                "export",
                "--format",
                format,
                "--output",
                file.to_str().unwrap(),
            ])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pk = dir.join("public.pem");
        let ok = app
            .cli(&[
                "audit",
                "verify",
                "--file",
                file.to_str().unwrap(),
                "--public-key",
                pk.to_str().unwrap(),
            ])
            .await;
        assert!(
            ok.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&ok.stdout)
        );

        let text = std::fs::read_to_string(&file).unwrap();
        let forged = text.replacen("user:bob@example.com", "user:eve@example.com", 1);
        assert_ne!(text, forged);
        std::fs::write(&file, forged).unwrap();
        let bad = app
            .cli(&[
                "audit",
                "verify",
                "--file",
                file.to_str().unwrap(),
                "--public-key",
                pk.to_str().unwrap(),
            ])
            .await;
        assert_eq!(bad.status.code(), Some(3), "{format}: tampering caught");
    }
}

#[tokio::test]
async fn a_signature_from_another_key_does_not_verify() {
    let app = app_with_history().await;
    let dir = app.dir.path().to_path_buf();
    let file = dir.join("export.ndjson");
    app.cli(&["audit", "export", "--output", file.to_str().unwrap()])
        .await;
    let other = tempfile::tempdir().unwrap();
    let other_key = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args([
            "--db",
            other.path().join("x.db").to_str().unwrap(),
            "audit",
            "public-key",
        ])
        .env("COUNTERSIGN_SIGNING_KEY", other.path().join("k.pem"))
        .output()
        .unwrap();
    std::fs::write(dir.join("other.pem"), &other_key.stdout).unwrap();
    let out = app
        .cli(&[
            "audit",
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--public-key",
            dir.join("other.pem").to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test]
async fn the_audit_api_filters_pages_and_exports_with_hashes() {
    let app = app_with_history().await;
    let auditor = app.key("user:carol@example.com", None, "audit").await;
    let all: Value = app
        .get(&auditor, "/v1/audit?limit=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["events"].as_array().unwrap().len(), 3);
    let cursor = all["next_cursor"].as_i64().unwrap();
    let next: Value = app
        .get(&auditor, &format!("/v1/audit?limit=3&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(next["events"][0]["seq"].as_i64().unwrap() < cursor);

    let by_actor: Value = app
        .get(&auditor, "/v1/audit?actor=user:bob@example.com")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        by_actor["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "user:bob@example.com")
    );
    assert!(!by_actor["events"].as_array().unwrap().is_empty());
    let decisions: Value = app
        .get(&auditor, "/v1/audit?kind=decision.&action=db.*&since=1h")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(decisions["events"].as_array().unwrap().len(), 1);
    let none: Value = app
        .get(&auditor, "/v1/audit?until=2020-01-01")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["events"].as_array().unwrap().len(), 0);
    let export: Value = app
        .get(&auditor, "/v1/audit?kind=request.created&limit=1")
        .await
        .json()
        .await
        .unwrap();
    let request_id = export["events"][0]["request_id"].as_str().unwrap();
    let req: Value = app
        .get(&auditor, &format!("/v1/audit?request={request_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(!req["events"].as_array().unwrap().is_empty());
    assert_eq!(
        app.get(&auditor, "/v1/audit?since=whenever").await.status(),
        400
    );

    let export = app.get(&auditor, "/v1/audit/export?format=ndjson").await;
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let text = export.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["seq"], 1);
    assert!(
        lines
            .iter()
            .all(|l| l["hash"].as_str().unwrap().len() == 64)
    );
    let csv = app
        .get(&auditor, "/v1/audit/export?format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("seq,ts,actor,request_id,action,kind,data,prev_hash,hash,signature"));
    let verify: Value = app
        .get(&auditor, "/v1/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verify["ok"], true);
}

#[tokio::test]
async fn every_audit_filter_path_returns_what_a_naive_scan_of_the_trail_would() {
    use countersign::store::trail::{AuditFilter, query};
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    for action in [
        "db.export",
        "db.read",
        "iam.role.grant",
        "db.export",
        "infra.rebuild",
    ] {
        let mut body = export_request();
        body["action"] = serde_json::json!(action);
        let id = app.create(&agent, body).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        if action != "db.read" {
            app.decide(&bob, &id, "approve", None).await;
        }
    }
    let store = &app.app.store;
    let all = query(
        store,
        &AuditFilter {
            limit: 10_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mid = &all[all.len() / 2];
    let since = countersign::clock::parse(&mid.ts).unwrap();
    let request = all
        .iter()
        .find(|e| !e.request_id.is_empty())
        .unwrap()
        .request_id
        .clone();
    // SQLite's GLOB and globset agree on `*` (any characters, `/` included).
    let glob = |pattern: &str, value: &str| {
        globset::Glob::new(pattern)
            .unwrap()
            .compile_matcher()
            .is_match(value)
    };
    type Keep = Box<dyn Fn(&countersign::store::audit::StoredEvent) -> bool>;
    let filters: Vec<(AuditFilter, Keep)> = vec![
        (
            AuditFilter {
                actor: Some("user:bob@example.com".into()),
                ..Default::default()
            },
            Box::new(|e| e.actor == "user:bob@example.com"),
        ),
        (
            AuditFilter {
                request_id: Some(request.parse().unwrap()),
                ..Default::default()
            },
            Box::new(move |e| e.request_id == request),
        ),
        (
            AuditFilter {
                action: Some("db.export".into()),
                ..Default::default()
            },
            Box::new(|e| e.action == "db.export"),
        ),
        (
            AuditFilter {
                action: Some("db.*".into()),
                ..Default::default()
            },
            Box::new(move |e| glob("db.*", &e.action)),
        ),
        (
            AuditFilter {
                action: Some("*".into()),
                ..Default::default()
            },
            Box::new(move |e| !e.action.is_empty()),
        ),
        (
            AuditFilter {
                action: Some("nothing.*".into()),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
        (
            AuditFilter {
                kind: Some("decision.".into()),
                ..Default::default()
            },
            Box::new(|e| e.kind.starts_with("decision.")),
        ),
        (
            AuditFilter {
                kind: Some("request.created".into()),
                ..Default::default()
            },
            Box::new(|e| e.kind == "request.created"),
        ),
        (
            AuditFilter {
                since: Some(since),
                ..Default::default()
            },
            Box::new(move |e| countersign::clock::parse(&e.ts).unwrap() >= since),
        ),
        (
            AuditFilter {
                until: Some(since),
                ..Default::default()
            },
            Box::new(move |e| countersign::clock::parse(&e.ts).unwrap() < since),
        ),
        (
            AuditFilter {
                action: Some("db.*".into()),
                since: Some(since),
                kind: Some("request.".into()),
                ..Default::default()
            },
            Box::new(move |e| {
                glob("db.*", &e.action)
                    && countersign::clock::parse(&e.ts).unwrap() >= since
                    && e.kind.starts_with("request.")
            }),
        ),
        (
            AuditFilter {
                actor: Some("agent:deploy-bot".into()),
                action: Some("iam.*".into()),
                ..Default::default()
            },
            Box::new(move |e| e.actor == "agent:deploy-bot" && glob("iam.*", &e.action)),
        ),
    ];
    for (mut filter, keep) in filters {
        let expected: Vec<i64> = all.iter().filter(|e| keep(e)).map(|e| e.seq).collect();
        // Page through three at a time to exercise the cursor too.
        filter.limit = 3;
        let mut got = vec![];
        loop {
            let page = query(store, &filter).await.unwrap();
            got.extend(page.iter().map(|e| e.seq));
            if page.len() < 3 {
                break;
            }
            filter.before = page.last().map(|e| e.seq);
        }
        assert_eq!(got, expected, "{filter:?}");
    }
}

/// Appends `n` chained events after the current head, signed at the end,
/// straight into the file (as an import would).
async fn seed_events(db: &std::path::Path, key: &std::path::Path, n: i64) {
    use countersign::store::audit::{GENESIS, Signer, event_hash};
    let signer = Signer::load_or_create(key).unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    let (mut seq, mut prev) = head.unwrap_or((0, GENESIS.to_string()));
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    for i in 0..n {
        seq += 1;
        let data = format!("{{\"n\":{i}}}");
        let ts = "2026-01-01T00:00:00.000Z";
        let hash = event_hash(
            &prev,
            seq,
            ts,
            "user:seed@example.com",
            "",
            "seed.action",
            "seed.event",
            &data,
        );
        sqlx::query("INSERT INTO audit_events (seq, ts, actor, request_id, action, kind, data, prev_hash, hash) VALUES (?, ?, 'user:seed@example.com', '', 'seed.action', 'seed.event', ?, ?, ?)")
            .bind(seq).bind(ts).bind(&data).bind(&prev).bind(&hash)
            .execute(&mut conn).await.unwrap();
        prev = hash;
    }
    sqlx::query(
        "INSERT INTO audit_signatures (seq, hash, signature, public_key) VALUES (?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(&prev)
    .bind(signer.sign(&prev))
    .bind(signer.public_hex())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn verify_finds_tampering_where_its_parallel_stretches_meet() {
    if !crate::helpers::sqlite_file_at_hand(
        "verify_finds_tampering_where_its_parallel_stretches_meet",
    ) {
        return;
    }
    let app = app_with_history().await;
    let dir = app.stop().await;
    let db = dir.path().join("countersign.db");
    seed_events(&db, &dir.path().join("audit-key.pem"), 40_000).await;
    let ok = cli_in(&dir, &["audit", "verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(verify_json(&ok)["events"].as_u64().unwrap() > 40_000);

    // The halves verified in parallel meet between `end` and `end + 1`.
    let head = verify_json(&ok)["head_seq"].as_i64().unwrap();
    assert!(head >= countersign::store::trail::SPLIT_AT);
    let (end, start) = (head / 2, head / 2 + 1);
    let cases: Vec<(Vec<String>, i64)> = vec![
        (
            vec![format!("DELETE FROM audit_events WHERE seq = {start}")],
            start,
        ),
        (
            vec![format!("DELETE FROM audit_events WHERE seq = {end}")],
            end,
        ),
        (
            vec![format!(
                "UPDATE audit_events SET data = '{{\"n\":-1}}' WHERE seq = {start}"
            )],
            start,
        ),
        (
            vec![
                format!("UPDATE audit_events SET seq = -1 WHERE seq = {end}"),
                format!("UPDATE audit_events SET seq = {end} WHERE seq = {start}"),
                format!("UPDATE audit_events SET seq = {start} WHERE seq = -1"),
            ],
            end,
        ),
    ];
    for (sql, bad) in cases {
        let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
        let sql = sql.as_slice();
        let copy = tempfile::tempdir().unwrap();
        for f in [
            "countersign.db",
            "countersign.db-wal",
            "countersign.db-shm",
            "audit-key.pem",
        ] {
            if dir.path().join(f).exists() {
                std::fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
            }
        }
        tamper(&copy.path().join("countersign.db"), sql).await;
        let out = cli_in(&copy, &["audit", "verify"]);
        assert_eq!(out.status.code(), Some(3), "{sql:?}");
        assert_eq!(
            verify_json(&out)["first_bad_seq"],
            bad,
            "{sql:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
