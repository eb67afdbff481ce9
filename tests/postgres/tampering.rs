//! The trail on PostgreSQL is append-only for every client, and what an
//! attacker who switches the guards off changes, `audit verify` names, the
//! same way as on SQLite.

use countersign::store::audit::Break;
use countersign::store::postgres;
use countersign::store::trail::ExportFormat;
use sqlx::Executor;

use crate::{Pg, tamper_sqlite};

#[tokio::test]
async fn the_edits_of_issue_8_are_refused_by_the_triggers_and_nothing_changes() {
    let Some(pg) = Pg::seeded("tamper_refused", 200).await else {
        return;
    };
    let before = pg.export(ExportFormat::Ndjson).await;
    let mut conn = pg.psql().await;
    for attack in [
        "UPDATE audit_events SET data = replace(data, 'customers', 'nobody') WHERE kind = 'request.created'",
        "UPDATE audit_events SET kind = 'request.approved' WHERE kind = 'request.denied'",
        // Cutting the tail back to an earlier signed head.
        "DELETE FROM audit_events WHERE seq > 128",
        "DELETE FROM audit_signatures WHERE seq > 128",
        "UPDATE audit_signatures SET signature = signature WHERE seq = 64",
        "TRUNCATE audit_events",
        "TRUNCATE audit_signatures CASCADE",
        // Hiding `decision.` events from prefix queries.
        "DELETE FROM audit_facets WHERE facet = 'kind' AND value LIKE 'decision.%'",
        "TRUNCATE audit_facets",
    ] {
        let err = conn
            .execute(attack)
            .await
            .expect_err(&format!("{attack} was allowed"));
        assert!(err.to_string().contains("append-only"), "{attack}: {err}");
    }
    assert_eq!(pg.export(ExportFormat::Ndjson).await, before);
    let report = postgres::trail::verify(&pg.pool, pg.signer.verifying_key())
        .await
        .unwrap()
        .expect("the trail verifies");
    assert_eq!(report.events, 200);
}

#[tokio::test]
async fn an_event_that_would_leave_a_gap_or_fork_the_chain_is_refused() {
    let Some(pg) = Pg::seeded("tamper_chain", 10).await else {
        return;
    };
    let (head,): (String,) = sqlx::query_as("SELECT hash FROM audit_events WHERE seq = 10")
        .fetch_one(&pg.pool)
        .await
        .unwrap();
    let (ninth,): (String,) = sqlx::query_as("SELECT hash FROM audit_events WHERE seq = 9")
        .fetch_one(&pg.pool)
        .await
        .unwrap();
    let insert = |seq: i64, prev: String| {
        let pool = pg.pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO audit_events (seq, ts, actor, kind, data, prev_hash, hash) \
                 VALUES ($1, '2026-06-01T00:00:00.000Z', 'user:m@example.com', 'forged', '{}', $2, $3)",
            )
            .bind(seq)
            .bind(prev)
            .bind("f".repeat(64))
            .execute(&pool)
            .await
        }
    };
    let gap = insert(12, head.clone()).await.expect_err("a gap");
    assert!(
        gap.to_string().contains("does not follow the chain"),
        "{gap}"
    );
    let fork = insert(11, ninth.clone()).await.expect_err("a fork");
    assert!(
        fork.to_string().contains("does not follow the chain"),
        "{fork}"
    );
    let twice = insert(10, ninth).await.expect_err("a second event 10");
    assert!(twice.to_string().contains("duplicate key"), "{twice}");
    // The next event, linked right, is accepted: appending still works.
    insert(11, head).await.expect("the next event");
}

/// Each tampering, done to the same trail on both backends, and the break
/// `audit verify` must name.
#[tokio::test]
async fn verify_names_a_changed_event_a_removed_event_and_a_bad_signature_as_sqlite_does() {
    let cases: &[(&str, &[&str], i64, &str)] = &[
        (
            "a changed event",
            &["UPDATE audit_events SET data = '{\"n\":1}' WHERE seq = 77"],
            77,
            "hash does not match",
        ),
        (
            "a removed event",
            &["DELETE FROM audit_events WHERE seq = 100"],
            100,
            "event 100 is missing",
        ),
        (
            "a bad signature",
            &["UPDATE audit_signatures SET signature = \
               (SELECT signature FROM audit_signatures WHERE seq = 64) WHERE seq = 128"],
            128,
            "does not verify with this public key",
        ),
        (
            "a removed last signature",
            &["DELETE FROM audit_signatures WHERE seq = 200"],
            193,
            "not covered by a signature",
        ),
        (
            "a removed last event",
            &["DELETE FROM audit_events WHERE seq = 200"],
            200,
            "the trail was truncated",
        ),
        (
            "an edited event re-hashed without the key",
            &[
                "UPDATE audit_events SET actor = 'user:mallory@example.com', \
                 hash = '0000000000000000000000000000000000000000000000000000000000000001' WHERE seq = 150",
            ],
            150,
            "hash does not match",
        ),
    ];
    for (i, (what, sql, seq, reason)) in cases.iter().enumerate() {
        let Some(pg) = Pg::seeded(&format!("tamper_verify_{i}"), 200).await else {
            return;
        };
        let twin = pg.sqlite_twin(200).await;
        pg.tamper(sql).await;
        tamper_sqlite(&twin, sql).await;
        let key = pg.signer.verifying_key();
        let on_pg: Break = postgres::trail::verify(&pg.pool, key)
            .await
            .unwrap()
            .expect_err(what);
        let on_sqlite: Break = countersign::store::trail::verify(&twin, key)
            .await
            .unwrap()
            .expect_err(what);
        assert_eq!(on_pg, on_sqlite, "{what}");
        assert_eq!(on_pg.seq, *seq, "{what}: {}", on_pg.reason);
        assert!(on_pg.reason.contains(reason), "{what}: {}", on_pg.reason);
    }
}
