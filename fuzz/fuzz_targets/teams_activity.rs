//! `POST /teams/messages` after its token check: the activity JSON, the
//! command text with mentions and markup, and the `audit …` grammar.
#![no_main]

use chrono::{DateTime, Utc};
use countersign::channels::teams::activity::{Activity, audit_words, command_text};
use countersign::domain::audit_command::{self, AuditCommand, PersonRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(a) = Activity::parse(data) else {
        return;
    };
    let (text, mentions) = command_text(&a);
    // Whitespace is normalised: one space between words, none around.
    assert_eq!(text, text.split_whitespace().collect::<Vec<_>>().join(" "));
    let Some(rest) = audit_words(&text) else {
        return;
    };
    let now = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).expect("a valid time");
    if let Ok(parsed) = audit_command::parse(rest, now)
        && let AuditCommand::Person(PersonRef::Mention(m)) = parsed.command
    {
        let _ = m
            .strip_prefix("@mention")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| mentions.get(n));
    }
    // What a card click reads from the activity's value.
    let action = a.value.as_ref().and_then(|v| v.get("action"));
    let data = action.and_then(|x| x.get("data"));
    for k in ["request_id", "reason", "payload_sha256"] {
        let _ = data
            .and_then(|d| d.get(k))
            .and_then(serde_json::Value::as_str);
    }
});
