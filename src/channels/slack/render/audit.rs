//! The `/audit` answers as Slack templates see them: lists of requests,
//! a request's timeline (with its agent text in full), a person's
//! activity, the chain's verification and the usage. Events are the kit's
//! ([`EventFacts`]: one description for every channel), escaped for the
//! mrkdwn lines the answers use.

use serde::Serialize;
use serde_json::{Value, json};

use super::super::limits::{escape, escape_clip, mrkdwn};
use super::request::{FULL_TEXT_COMMAND, RequestView, SlackNames};
use crate::channels::kit::event::EventFacts;
use crate::channels::kit::view;
use crate::service::audit_query::{AuditAnswer, VerifyResult};
use crate::store::requests::Approval;
use crate::store::trail::AuditEventView;

/// Events per page of a timeline (the other answers are paged by the query).
pub const TIMELINE_PAGE: usize = 20;

/// The template, its context and the notification text of an answer.
/// `query` is the command text without `page:`, to offer the next page.
pub fn context(
    answer: &AuditAnswer,
    page: u32,
    query: &str,
    names: &SlackNames,
) -> (&'static str, Value, String) {
    let next = |more: bool| more.then(|| Next::new(query, page + 1));
    match answer {
        AuditAnswer::Requests {
            title,
            items,
            page,
            more,
        } => (
            super::AUDIT_REQUESTS,
            json!({ "a": {
                "title": escape_clip(title, 140),
                "items": items.iter().map(|a| RequestView::new(a, names)).collect::<Vec<_>>(),
                "page": page, "next": next(*more),
            }}),
            format!("{title}: {} shown", items.len()),
        ),
        AuditAnswer::Timeline { request, events } => {
            let start = (page.max(1) as usize - 1) * TIMELINE_PAGE;
            let shown: Vec<EventLine> = events
                .iter()
                .skip(start)
                .take(TIMELINE_PAGE)
                .map(EventLine::new)
                .collect();
            let more = events.len() > start + TIMELINE_PAGE;
            (
                super::AUDIT_TIMELINE,
                json!({
                    "r": RequestView::new(request, names),
                    "a": {
                        "events": shown, "page": page, "next": next(more),
                        "payload": if page <= 1 { full_payload(request) } else { vec![] },
                    },
                }),
                format!("Timeline of request {}", request.id),
            )
        }
        AuditAnswer::Person {
            principal,
            events,
            page,
            more,
        } => (
            super::AUDIT_PERSON,
            json!({ "a": {
                "principal": escape(principal.as_str()),
                "events": events.iter().map(EventLine::new).collect::<Vec<_>>(),
                "page": page, "next": next(*more),
            }}),
            format!("Activity of {principal}"),
        ),
        AuditAnswer::Verify(v) => (
            super::AUDIT_VERIFY,
            json!({ "a": verify_view(v) }),
            format!(
                "Audit chain {}",
                if v.ok { "verified" } else { "is broken" }
            ),
        ),
        AuditAnswer::Help(usage) => (
            super::AUDIT_HELP,
            json!({ "a": help_view(usage) }),
            usage.to_string(),
        ),
    }
}

/// One audit event as a line of an answer (mrkdwn).
#[derive(Debug, Serialize)]
struct EventLine {
    ts: String,
    kind: String,
    actor: String,
    request_id: Option<String>,
    action: Option<String>,
    detail: String,
}

impl EventLine {
    fn new(e: &AuditEventView) -> Self {
        let f = EventFacts::new(e, FULL_TEXT_COMMAND);
        Self {
            ts: mrkdwn(&f.ts),
            kind: mrkdwn(&f.kind),
            actor: mrkdwn(&f.actor),
            request_id: f.request_id.as_deref().map(mrkdwn),
            action: f.action.as_deref().map(mrkdwn),
            detail: mrkdwn(&f.detail),
        }
    }
}

/// The "next page" of an audit answer: a command to type and a button value.
#[derive(Debug, Serialize)]
struct Next {
    command: String,
    /// Empty when the query is too long to fit in a button.
    value: String,
}
impl Next {
    fn new(query: &str, page: u32) -> Self {
        let q = query.trim();
        // Shown in a code span, where only a backtick (or a line break)
        // could end it early; `*` and `_` stay as typed so the command can
        // be copied.
        let command = escape_clip(
            &if q.is_empty() {
                format!("/audit page:{page}")
            } else {
                format!("/audit {q} page:{page}")
            },
            500,
        )
        .replace('`', "ˋ")
        .replace('\n', " ");
        let value = if q.len() <= 1500 {
            json!({ "q": q, "p": page }).to_string()
        } else {
            String::new()
        };
        Self { command, value }
    }
}
/// A request's agent-supplied text in full, as plain_text section texts
/// of at most [`FULL_CHUNK`] characters each once escaped: what the notes
/// on cut fields promise `/audit <id>` shows.
fn full_payload(a: &Approval) -> Vec<String> {
    let mut out = vec![];
    for (label, text) in view::full_payload(a) {
        chunks_into(&mut out, &format!("{label}:\n"), &text);
    }
    out
}

/// Leaves room under Slack's 3,000 for the JSON of a section.
const FULL_CHUNK: usize = 2900;

/// Splits `label` + `s` into escaped pieces that each fit a text object.
fn chunks_into(out: &mut Vec<String>, label: &str, s: &str) {
    let mut piece = label.to_string();
    let mut len = piece.chars().count();
    for c in s.chars() {
        let e = escape(c.encode_utf8(&mut [0; 4]));
        let n = e.chars().count();
        if len + n > FULL_CHUNK {
            out.push(std::mem::take(&mut piece));
            len = 0;
        }
        piece.push_str(&e);
        len += n;
    }
    if !piece.is_empty() {
        out.push(piece);
    }
}
fn verify_view(v: &VerifyResult) -> Value {
    json!({
        "ok": v.ok, "events": v.events, "signatures": v.signatures, "head_seq": v.head_seq,
        "head_hash": escape(&v.head_hash), "first_bad_seq": v.first_bad_seq,
        "reason": v.reason.as_deref().map(|r| escape_clip(r, 1000)),
        "public_key": escape(&v.public_key),
        "mismatches": v.mismatches.iter().take(10).map(|m| {
            escape_clip(&format!("{} {}: {}", m.subject, m.id, m.fields.join(", ")), 300)
        }).collect::<Vec<_>>(),
        "more_mismatches": v.mismatches.len().saturating_sub(10),
        "checkpoint": v.checkpoint.as_ref().map(|c| json!({
            "seq": c.seq, "hash": escape(&c.hash), "ts": escape(&c.ts),
            "sink": escape(v.checkpoint_sink.map_or("file", |s| s.name())),
        })),
    })
}
fn help_view(usage: &str) -> Value {
    let forms = [
        ("/audit", "recent requests"),
        ("/audit <request id>", "that request's full timeline"),
        ("/audit pending", "requests waiting for a decision"),
        (
            "/audit @someone  or  /audit user:alice@example.com",
            "what they requested and decided",
        ),
        (
            "/audit action:db.* since:24h  (or 7d, 2026-01-31)",
            "requests by action and time",
        ),
        (
            "/audit verify",
            "recompute the hash chain and check its signatures",
        ),
        ("… page:2", "the next page of a long answer"),
    ];
    json!({
        "usage": escape(usage),
        "forms": forms.iter().map(|(f, m)| format!("`{}` — {}", escape(f), m)).collect::<Vec<_>>(),
    })
}
