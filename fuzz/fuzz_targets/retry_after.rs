//! `Retry-After` from a webhook receiver, the Bot Connector or Slack, read
//! by `outbox::retry_after`, and the next attempt `Outbox::record`
//! schedules from it with `outbox::next_attempt_at`.
#![no_main]

use std::time::Duration;

use countersign::clock;
use countersign::outbox::{next_attempt_at, retry_after};
use libfuzzer_sys::fuzz_target;

const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, value);
    let Some(after) = retry_after(&headers) else {
        return;
    };
    // As `record` does: no sooner than the backoff (at least 1 s here).
    let now = clock::now();
    let at = next_attempt_at(now, after.max(Duration::from_secs(1)), GIVE_UP_AFTER);
    assert!(at > now);
    assert!(at <= now + chrono::Duration::days(1));
    // The outbox finds due rows by comparing these as text.
    assert!(clock::fmt(at) > clock::fmt(now));
});
