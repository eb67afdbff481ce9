//! `Retry-After` from a webhook receiver, the Bot Connector or Slack, read
//! by `outbox::retry_after`, and the next attempt the outbox schedules
//! from it.
#![no_main]

use std::time::Duration;

use countersign::outbox::retry_after;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, value);
    let Some(after) = retry_after(&headers) else {
        return;
    };
    // What Outbox::record does with it today.
    let now = countersign::clock::now();
    let delay = after.max(Duration::from_secs(1));
    let delay = chrono::Duration::from_std(delay).unwrap_or_default();
    let _ = countersign::clock::fmt(now + delay);
});
