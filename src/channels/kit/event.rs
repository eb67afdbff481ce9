//! One description of an audit event, for every channel's audit answers.
//!
//! Which facts of an event an auditor reads in chat, and in which order,
//! is decided here once: the rule and its effect, the channel a decision
//! came through, the message or reason, the person's comment, an error,
//! and the payload hash a request was created with. The text is made
//! visible and cut to one limit ([`crate::channels::text`]); a platform
//! only escapes it and lays it out.

use serde_json::Value;

use super::view::utc_seconds;
use crate::channels::text::{self, FullText};
use crate::store::trail::AuditEventView;

/// The longest an event's detail may be on a chat answer, in characters.
pub const MAX_DETAIL: usize = 600;

/// Where the rest of a text is when it belongs to no request.
pub const NO_REQUEST: FullText<'static> = FullText {
    command: "countersign audit",
    request_id: "export",
};

/// An audit event as every channel shows it (not yet escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    pub seq: i64,
    /// `2026-01-31 12:00:05 UTC`.
    pub ts: String,
    pub kind: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub action: Option<String>,
    /// The facts worth showing, joined with ` · `; may be empty.
    pub detail: String,
}

impl EventFacts {
    /// `command` is the platform's command that shows a request in full
    /// (`/audit`, `audit`), for the note on a cut detail.
    pub fn new(e: &AuditEventView, command: &str) -> Self {
        let full = match e.request_id.as_deref() {
            Some(id) => FullText {
                command,
                request_id: id,
            },
            None => NO_REQUEST,
        };
        let one_line = |s: &str, max: usize| text::cut_to(s, max, false, full).0;
        Self {
            seq: e.seq,
            ts: utc_seconds(&e.ts),
            kind: one_line(&e.kind, 100),
            actor: one_line(&e.actor, text::Limit::Principal.chars()),
            request_id: e.request_id.as_deref().map(|r| one_line(r, 100)),
            action: e
                .action
                .as_deref()
                .map(|a| one_line(a, text::Limit::Action.chars())),
            detail: one_line(&detail_parts(e).join(" · "), MAX_DETAIL),
        }
    }
}

/// The facts of an event's data worth a line, in the order shown.
fn detail_parts(e: &AuditEventView) -> Vec<String> {
    let s = |k: &str| {
        e.data
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let mut parts: Vec<String> = vec![];
    if let (Some(rule), Some(effect)) = (s("rule"), s("effect")) {
        parts.push(format!("rule {rule} → {effect}"));
    }
    if e.kind.starts_with("decision.")
        && let Some(c) = s("channel")
    {
        parts.push(format!("via {c}"));
    }
    if let Some(m) = s("message").or(s("reason")) {
        parts.push(m.to_string());
    }
    if let Some(c) = s("comment") {
        parts.push(format!("“{c}”"));
    }
    if let Some(err) = s("error") {
        parts.push(err.to_string());
    }
    if e.kind == "request.created"
        && let Some(h) = s("payload_sha256")
    {
        parts.push(format!("payload {h}"));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, data: Value) -> AuditEventView {
        AuditEventView {
            seq: 7,
            ts: "2026-01-31T12:00:05.123Z".into(),
            actor: "user:bob@example.com".into(),
            request_id: Some("0192".into()),
            action: Some("db.export".into()),
            kind: kind.into(),
            data,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_decision_says_its_channel_its_message_and_the_comment() {
        let f = EventFacts::new(
            &event(
                "decision.deny",
                json!({ "channel": "teams", "comment": "freeze", "reason": "" }),
            ),
            "audit",
        );
        assert_eq!(f.detail, "via teams · “freeze”");
        assert_eq!(f.ts, "2026-01-31 12:00:05 UTC");
        assert_eq!(f.actor, "user:bob@example.com");
    }

    #[test]
    fn a_long_detail_is_cut_with_a_note_on_where_to_read_it() {
        let f = EventFacts::new(
            &event("decision.blocked", json!({ "message": "x".repeat(900) })),
            "/audit",
        );
        assert!(f.detail.ends_with("/audit 0192 shows all)"), "{}", f.detail);
    }
}
