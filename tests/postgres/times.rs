//! The audit trail keeps `ts` as the text that was hashed; every other time
//! is `timestamptz`. These show that a time the service writes (whole
//! milliseconds, `clock::now`) comes back formatting to the same text.

use chrono::{DateTime, Utc};
use countersign::clock;

use crate::Pg;

#[tokio::test]
async fn a_time_written_as_timestamptz_reads_back_as_the_same_clock_text() {
    let Some(pg) = Pg::new("times_round_trip").await else {
        return;
    };
    let texts = [
        "2026-01-31T12:00:00.000Z",
        "2026-02-28T23:59:59.999Z",
        "2028-02-29T00:00:00.001Z",
        "1999-12-31T23:59:59.500Z",
    ];
    let now = clock::fmt(clock::now());
    for text in texts.iter().copied().chain([now.as_str()]) {
        let t = clock::parse(text).unwrap();
        // Bound as a time, and given as text the way psql would.
        let (bound, parsed): (DateTime<Utc>, DateTime<Utc>) =
            sqlx::query_as("SELECT $1::timestamptz, $2::text::timestamptz")
                .bind(t)
                .bind(text)
                .fetch_one(&pg.pool)
                .await
                .unwrap();
        assert_eq!(clock::fmt(bound), text);
        assert_eq!(clock::fmt(parsed), text);
    }
}

#[tokio::test]
async fn a_hashed_time_that_is_not_clock_text_is_refused_by_the_schema() {
    let Some(pg) = Pg::new("times_refused").await else {
        return;
    };
    let zeros = "0".repeat(64);
    for ts in [
        "2026-01-31 12:00:00+00",
        "2026-01-31T12:00:00Z",
        "2026-01-31T12:00:00.000+00:00",
    ] {
        let refused = sqlx::query(
            "INSERT INTO audit_events (seq, ts, actor, kind, data, prev_hash, hash) \
             VALUES (1, $1, 'user:a@example.com', 'k', '{}', $2, $2)",
        )
        .bind(ts)
        .bind(&zeros)
        .execute(&pg.pool)
        .await;
        assert!(refused.is_err(), "{ts} was accepted");
    }
}
