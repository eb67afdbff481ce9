//! The `/audit` grammar (Slack's slash command, Teams' `audit …`).
#![no_main]

use chrono::{DateTime, Utc};
use countersign::domain::audit_command::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).expect("a valid time");
    let Ok(parsed) = parse(text, now) else {
        return;
    };
    assert!((1..=1000).contains(&parsed.page));
    // Parse, print, parse: a "next page" button carries the query without
    // its page words and appends `page:N`; that must name the same query.
    let query = text
        .split_whitespace()
        .filter(|w| !w.starts_with("page:"))
        .collect::<Vec<_>>()
        .join(" ");
    let again = parse(&format!("{query} page:{}", parsed.page), now)
        .expect("the next-page form of an accepted query parses");
    assert_eq!(again, parsed);
});
