//! The answer card's context for `audit …`: lists of requests, a
//! request's timeline (with its agent text in full), a person's activity,
//! the chain's verification and the usage, laid out for `audit.json`.
//! Requests and events are the kit's views ([`RequestFacts`],
//! [`EventFacts`]): the same facts and limits as every channel.

use serde_json::{Value, json};

use super::escape::escape;
use super::{FULL_TEXT_COMMAND, MAX_SHORT, line};
use crate::channels::kit::event::{EventFacts, NO_REQUEST};
use crate::channels::kit::view::{self, RequestFacts, shown_principal};
use crate::channels::text::{self, FullText};
use crate::service::audit_query::AuditAnswer;
use crate::store::trail::AuditEventView;

/// One event as a row: when and what, then who and the kit's detail.
fn event_row(e: &AuditEventView) -> Value {
    let f = EventFacts::new(e, FULL_TEXT_COMMAND);
    let mut body = format!("#{} {}", f.seq, f.actor);
    if let (Some(action), Some(id)) = (&f.action, &f.request_id) {
        body.push_str(&format!(" · {action} {id}"));
    }
    if !f.detail.is_empty() {
        body.push_str(&format!(" · {}", f.detail));
    }
    json!({ "head": format!("{} · {}", f.ts, f.kind), "body": body })
}

fn fact(title: &str, value: impl AsRef<str>) -> Value {
    json!({ "title": title, "value": escape(value.as_ref(), MAX_SHORT) })
}
fn next_page_hint(command: &str, page: u32, more: bool) -> String {
    if !more {
        return format!("Page {page}. {}", crate::domain::audit_command::HELP);
    }
    let rest: Vec<&str> = command
        .split_whitespace()
        .filter(|w| !w.starts_with("page:"))
        .collect();
    let next = format!("audit {} page:{}", rest.join(" "), page + 1).replace("  ", " ");
    format!(
        "Page {page}. More: send {}",
        text::cut_to(&next, 400, false, NO_REQUEST).0
    )
}

pub fn audit_context(answer: &AuditAnswer, command: &str) -> Value {
    let short = |s: &str, max: usize, full: FullText<'_>| text::cut_to(s, max, false, full).0;
    match answer {
        AuditAnswer::Requests {
            title,
            items,
            page,
            more,
        } => {
            let rows: Vec<Value> = items
                .iter()
                .map(|a| {
                    let f = RequestFacts::new(a, FULL_TEXT_COMMAND);
                    json!({
                        "head": format!(
                            "{} · {} · {}",
                            view::status_label(a.status),
                            f.action,
                            f.resource
                        ),
                        "body": format!(
                            "{} (by {}, {}, id {})",
                            f.summary, f.requester, f.created, f.id,
                        ),
                    })
                })
                .collect();
            json!({
                "kind": "requests",
                "title": short(title, MAX_SHORT, NO_REQUEST),
                "rows": rows,
                "empty": items.is_empty().then_some("No requests match."),
                "footer": next_page_hint(command, *page, *more),
            })
        }
        AuditAnswer::Timeline { request, events } => {
            let a = request;
            let f = RequestFacts::new(a, FULL_TEXT_COMMAND);
            let mut lines = vec![
                line("Status: ", a.status.as_str()),
                line("Action: ", f.action.clone()),
                line("Resource: ", f.resource.clone()),
                line("Requester: ", f.requester.clone()),
            ];
            if let Some(p) = &f.on_behalf_of {
                lines.push(line("On behalf of: ", p.clone()));
            }
            lines.push(line("Policy rule: ", f.policy_rule.clone()));
            lines.push(line("Payload SHA-256: ", a.payload_sha256.clone()));
            let rows: Vec<Value> = events.iter().map(event_row).collect();
            json!({
                "kind": "timeline",
                "title": format!("Timeline of {}", a.id),
                "lines": lines,
                "payload": view::full_payload(a).into_iter().map(|(k, v)| line(k, v)).collect::<Vec<_>>(),
                "rows": rows,
                "empty": events.is_empty().then_some("No events."),
                "footer": "Every line is one event of the hash-chained, signed audit trail.",
            })
        }
        AuditAnswer::Person {
            principal,
            events,
            page,
            more,
        } => {
            let rows: Vec<Value> = events.iter().map(event_row).collect();
            json!({
                "kind": "person",
                "title": format!(
                    "What {} requested and decided",
                    short(shown_principal(principal.as_str()), MAX_SHORT, NO_REQUEST)
                ),
                "rows": rows,
                "empty": events.is_empty().then_some("Nothing on record."),
                "footer": next_page_hint(command, *page, *more),
            })
        }
        AuditAnswer::Verify(v) => {
            let verdict = if v.ok {
                format!(
                    "✅ The audit trail verifies: {} events, {} signatures.",
                    v.events, v.signatures
                )
            } else if let Some(seq) = v.first_bad_seq {
                format!(
                    "❌ The audit trail FAILED verification at event {}: {}",
                    seq,
                    escape(v.reason.as_deref().unwrap_or("unknown"), MAX_SHORT)
                )
            } else {
                let named: Vec<String> = v
                    .mismatches
                    .iter()
                    .take(10)
                    .map(|m| format!("{} {}: {}", m.subject, m.id, m.fields.join(", ")))
                    .collect();
                format!(
                    "❌ The chain verifies, but {} row(s) disagree with it: {}",
                    v.mismatches.len(),
                    escape(&named.join("; "), MAX_SHORT)
                )
            };
            let checkpoint = v
                .checkpoint
                .as_ref()
                .map_or("none written".to_string(), |c| {
                    let sink = v.checkpoint_sink.map_or("file", |s| s.name());
                    format!("event {} at {}, hash {} ({sink})", c.seq, c.ts, c.hash)
                });
            json!({
                "kind": "verify",
                "title": "Audit trail verification",
                "ok": v.ok,
                "verdict": verdict,
                "facts": [
                    fact("Events", v.events.to_string()),
                    fact("Signatures", v.signatures.to_string()),
                    fact("Head", v.head_seq.to_string()),
                    fact("Head hash", &v.head_hash),
                    fact("Last checkpoint", &checkpoint),
                    fact("Public key", &v.public_key),
                ],
                "rows": [],
                "footer": "Verify offline with countersign audit verify --file EXPORT --public-key KEY.",
            })
        }
        AuditAnswer::Help(help) => json!({
            "kind": "help",
            "title": "Countersign audit",
            "rows": [],
            "empty": text::cut_to(help, 1000, true, NO_REQUEST).0,
            "footer": "Answers come from the hash-chained, signed audit trail.",
        }),
    }
}
