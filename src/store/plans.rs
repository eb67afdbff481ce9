//! The query plans SQLite picks for the per-request reads of the trail.
//!
//! Without statistics (the service never runs ANALYZE) SQLite chooses
//! between two equality indexes by rule, and for `request_id = ? AND kind
//! = ?` it takes the kind's: every message rendered or permit served would
//! read that kind's events of every request ever made (a million-event
//! trail made the Slack path fifty times slower). These statements say
//! `+kind`, and this keeps them on the request's index. Likewise the
//! expiry sweep, which runs inside the writer: by rule SQLite walks every
//! pending request (the status index) to find the few overdue ones; it is
//! told to use the partial index of pending deadlines.

use sqlx::Connection;

async fn plan(sql: &str, binds: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plans.db");
    let url = db.to_str().unwrap();
    super::migrate(url).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect_with(&super::connect_options(url).unwrap())
        .await
        .unwrap();
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(explain));
    for _ in 0..binds {
        q = q.bind("a-value");
    }
    let rows = q.fetch_all(&mut conn).await.unwrap();
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
}

#[tokio::test]
async fn a_requests_step_up_mark_is_read_through_the_requests_index() {
    let p = plan(super::requests::STEP_UP_SQLITE, 1).await;
    assert!(p.contains("USING INDEX audit_events_request"), "{p}");
}

#[tokio::test]
async fn a_requests_permit_is_read_through_the_requests_index() {
    let p = plan(super::permits::ISSUED_SQLITE, 1).await;
    assert!(p.contains("USING INDEX audit_events_request"), "{p}");
}

#[tokio::test]
async fn the_expiry_sweep_reads_only_the_overdue_through_the_pending_deadlines_index() {
    for (sql, binds) in [
        (super::requests::OVERDUE_SQLITE, 2),
        (super::requests::NEXT_DEADLINE_SQLITE, 0),
    ] {
        let p = plan(sql, binds).await;
        assert!(p.contains("approval_requests_pending_expiry"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }
}
