//! The real binary on PostgreSQL: `countersign migrate`, `audit
//! export|verify` and the store commands (`keys`, `identities`, `teams`)
//! against a fresh database.

use std::path::Path;
use std::process::Output;

use countersign::store::audit::Signer;
use serde_json::Value;

use crate::postgres_support::TestDb;
use crate::{Pg, tamper_sqlite};

/// Runs `countersign --db DB ARGS` with the signing key in `dir`, as an
/// operator would, in `dir` (so a stray file would show up there).
async fn cli(db: &str, dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir)
        .arg("--db")
        .arg(db)
        .args(args)
        .env("COUNTERSIGN_SIGNING_KEY", dir.join("audit-key.pem"))
        .env("COUNTERSIGN_PERMIT_KEY", dir.join("permit-key.pem"))
        .env_remove("COUNTERSIGN_CONFIG")
        .env_remove("COUNTERSIGN_DB")
        .env_remove("COUNTERSIGN_SIGNING_KEY_PEM")
        .output()
        .await
        .expect("the binary runs")
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON report ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn migrate_applies_the_postgres_schema_and_running_it_again_changes_nothing() {
    let Some(db) = TestDb::create("cli_migrate").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    Signer::load_or_create(&dir.path().join("audit-key.pem")).unwrap();
    for run in 1..=2 {
        let out = cli(&db.url, dir.path(), &["migrate"]).await;
        assert!(out.status.success(), "run {run}: {}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("migrated postgres://"),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = cli(&db.url, dir.path(), &["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(report(&out)["events"], 0);
}

#[tokio::test]
async fn the_cli_export_of_a_seeded_chain_equals_the_sqlite_export_of_the_same_events() {
    let events = 1_000;
    let Some(pg) = Pg::seeded("cli_export", events).await else {
        return;
    };
    let twin = pg.sqlite_twin(events).await;
    let dir = pg.dir.path();
    for format in ["ndjson", "csv"] {
        let (from_pg, from_sqlite) = (
            dir.join(format!("pg.{format}")),
            dir.join(format!("sqlite.{format}")),
        );
        for (db, file) in [(&pg.db.url, &from_pg), (&twin, &from_sqlite)] {
            let out = cli(
                db,
                dir,
                &[
                    "audit",
                    "export",
                    "--format",
                    format,
                    "--output",
                    file.to_str().unwrap(),
                ],
            )
            .await;
            assert!(out.status.success(), "{db} {format}: {}", stderr(&out));
        }
        let (a, b) = (
            std::fs::read(&from_pg).unwrap(),
            std::fs::read(&from_sqlite).unwrap(),
        );
        assert!(a.len() > 100_000, "{format}: {} bytes", a.len());
        assert!(a == b, "{format}: the PostgreSQL and SQLite exports differ");
    }
    // And to stdout, as a pipe would take it.
    let out = cli(&pg.db.url, dir, &["audit", "export"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, std::fs::read(dir.join("pg.ndjson")).unwrap());
}

#[tokio::test]
async fn verify_passes_a_good_chain_and_exits_3_naming_the_event_an_attacker_edited() {
    let Some(pg) = Pg::seeded("cli_verify", 300).await else {
        return;
    };
    let dir = pg.dir.path();
    let out = cli(&pg.db.url, dir, &["audit", "verify", "--chain-only"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ok = report(&out);
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["events"], 300);
    assert_eq!(ok["head_seq"], 300);
    // It says plainly what it did not check (the seeded trail has no
    // request rows to replay into).
    assert!(
        ok["note"]
            .as_str()
            .is_some_and(|n| n.contains("--chain-only")),
        "{ok}"
    );
    assert!(
        !ok["source"].as_str().unwrap().contains("audit-key"),
        "{ok}"
    );

    pg.tamper(&["UPDATE audit_events SET actor = 'user:mallory@example.com' WHERE seq = 42"])
        .await;
    let out = cli(&pg.db.url, dir, &["audit", "verify", "--chain-only"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let bad = report(&out);
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["first_bad_seq"], 42, "{bad}");
    assert!(stderr(&out).contains("FAILED verification at seq 42"));
}

#[tokio::test]
async fn verify_with_checkpoints_names_the_checkpoint_when_the_tail_is_cut_back() {
    let Some(pg) = Pg::seeded("cli_checkpoints", 256).await else {
        return;
    };
    let dir = pg.dir.path();
    // The signed heads, as the service writes them to its checkpoint file.
    let out = cli(&pg.db.url, dir, &["audit", "export"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let key_id = pg.signer.public_hex().to_string();
    let mut file = String::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        if let Some(sig) = e["signature"].as_str() {
            file.push_str(
                &serde_json::json!({
                    "seq": e["seq"], "hash": e["hash"], "ts": e["ts"],
                    "signature": sig, "key_id": key_id,
                })
                .to_string(),
            );
            file.push('\n');
        }
    }
    assert_eq!(file.lines().count(), 4, "one head per 64 events");
    let checkpoints = dir.join("checkpoints.ndjson");
    std::fs::write(&checkpoints, file).unwrap();
    let cp = checkpoints.to_str().unwrap();

    let out = cli(
        &pg.db.url,
        dir,
        &["audit", "verify", "--chain-only", "--checkpoints", cp],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(report(&out)["checkpoints_checked"], 4);

    // Back to the head at 128: the chain alone still verifies.
    pg.tamper(&[
        "DELETE FROM audit_events WHERE seq > 128",
        "DELETE FROM audit_signatures WHERE seq > 128",
    ])
    .await;
    let out = cli(&pg.db.url, dir, &["audit", "verify", "--chain-only"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cli(
        &pg.db.url,
        dir,
        &["audit", "verify", "--chain-only", "--checkpoints", cp],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let bad = report(&out);
    assert_eq!(bad["checkpoint"]["seq"], 192, "{bad}");
    assert!(
        bad["reason"]
            .as_str()
            .unwrap()
            .contains("checkpoint at seq 192"),
        "{bad}"
    );
    assert!(stderr(&out).contains("FAILED the checkpoint check"));
}

#[tokio::test]
async fn keys_identities_and_teams_commands_run_on_postgres_and_land_in_its_trail() {
    let Some(db) = TestDb::create("cli_store_commands").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str]| {
        let (url, dir) = (db.url.clone(), dir.path().to_path_buf());
        async move {
            let out = cli(&url, &dir, args).await;
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let token = run(&[
        "keys",
        "create",
        "--principal",
        "agent:deploy-bot",
        "--owner",
        "user:alice@example.com",
        "--scopes",
        "request,read",
    ])
    .await;
    assert!(token.trim().starts_with("cs_"), "{token}");
    let keys = run(&["keys", "list"]).await;
    assert!(keys.contains("agent:deploy-bot"), "{keys}");
    run(&["identities", "link", "slack:T1/U1", "user:bob@example.com"]).await;
    let links = run(&["identities", "list"]).await;
    assert!(
        links.contains("slack:T1/U1") && links.contains("user:bob@example.com"),
        "{links}"
    );
    run(&["teams", "conversations", "list"]).await;

    // Each change is an event of the one chain, which verifies.
    let out = cli(&db.url, dir.path(), &["audit", "verify"]).await;
    let v = report(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["events"], 2, "{v}");
}

#[tokio::test]
async fn an_unknown_database_scheme_is_a_clear_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["migrate"][..], &["serve"][..], &["audit", "export"][..]] {
        let out = cli("mysql://root@localhost/cs", dir.path(), args).await;
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains("unsupported database URL scheme 'mysql://'"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files were created: {left:?}");
}

#[tokio::test]
async fn public_key_prints_the_signing_key_whatever_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::load_or_create(&dir.path().join("audit-key.pem")).unwrap();
    let out = cli(
        "postgres://postgres@127.0.0.1:5432/postgres",
        dir.path(),
        &["audit", "public-key"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), signer.public_pem());
}

/// Keeps `tamper_sqlite` in this suite's use list honest: the SQLite twin
/// of an edited PostgreSQL trail fails the same way.
#[tokio::test]
async fn the_sqlite_twin_of_an_edited_trail_fails_at_the_same_seq() {
    let Some(pg) = Pg::seeded("cli_twin_edit", 100).await else {
        return;
    };
    let twin = pg.sqlite_twin(100).await;
    let sql = "UPDATE audit_events SET kind = 'request.approved' WHERE seq = 17";
    pg.tamper(&[sql]).await;
    tamper_sqlite(&twin, &[sql]).await;
    let dir = pg.dir.path();
    let (a, b) = (
        report(&cli(&pg.db.url, dir, &["audit", "verify", "--chain-only"]).await),
        report(&cli(&twin, dir, &["audit", "verify", "--chain-only"]).await),
    );
    assert_eq!(a["first_bad_seq"], 17, "{a}");
    assert_eq!(a["first_bad_seq"], b["first_bad_seq"]);
    assert_eq!(a["reason"], b["reason"]);
}
