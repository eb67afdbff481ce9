//! Appends from several replicas form one chain: each takes the chain lock
//! in its transaction before it reads the head.

use std::time::Duration;

use countersign::store::postgres::{self, CHAIN_LOCK_KEY};
use sqlx::Executor;

use crate::Pg;

#[tokio::test]
async fn a_second_appender_waits_for_the_first_and_then_sees_its_event() {
    let Some(pg) = Pg::seeded("chain_lock", 5).await else {
        return;
    };
    let mut first = pg.psql().await;
    first.execute("BEGIN").await.unwrap();
    let head = postgres::lock_chain_head(&mut first).await.unwrap();
    assert_eq!(head.seq, 5);

    let mut second = pg.psql().await;
    let waiting = tokio::spawn(async move {
        second.execute("BEGIN").await.unwrap();
        let head = postgres::lock_chain_head(&mut second).await.unwrap();
        second.execute("ROLLBACK").await.unwrap();
        head
    });
    // The second appender is queued on the lock (seen in pg_locks), not
    // reading a head the first is about to move.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiters: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind(CHAIN_LOCK_KEY)
        .fetch_one(&pg.pool)
        .await
        .unwrap();
        if waiters == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second appender never queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!waiting.is_finished());

    let hash = countersign::store::audit::event_hash(
        &head.hash,
        6,
        "2026-06-01T00:00:00.000Z",
        "user:a@example.com",
        "",
        "",
        "test.appended",
        "{}",
    );
    sqlx::query(
        "INSERT INTO audit_events (seq, ts, actor, kind, data, prev_hash, hash) \
         VALUES (6, '2026-06-01T00:00:00.000Z', 'user:a@example.com', 'test.appended', '{}', $1, $2)",
    )
    .bind(&head.hash)
    .bind(&hash)
    .execute(&mut first)
    .await
    .unwrap();
    first.execute("COMMIT").await.unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the second appender gets the lock")
        .unwrap();
    assert_eq!((seen.seq, seen.hash), (6, hash));
}
