//! The approval card's context: the kit's facts of a request
//! ([`RequestFacts`]: the same values, labels and limits as every channel)
//! laid out for `request.json`. Agent text goes to TextRuns as the kit
//! prepared it; only the status line, the progress and the payload line
//! are ours and may sit in a (markdown) TextBlock.

use serde_json::{Value, json};

use super::escape::escape;
use super::{FULL_TEXT_COMMAND, MAX_NOTICE, Notice, line};
use crate::channels::kit::view::{self, RequestFacts};
use crate::channels::text::{self, FullText};
use crate::domain::{Risk, Status};
use crate::store::requests::Approval;

/// The status line and its container style.
fn status_style(status: Status) -> &'static str {
    match status {
        Status::Pending => "emphasis",
        Status::Approved => "good",
        Status::Denied => "attention",
        Status::Expired | Status::Cancelled => "warning",
    }
}

pub fn risk_label(risk: Risk) -> String {
    format!("{} {}", view::risk_emoji(risk), risk.as_str())
}

pub fn request_context(a: &Approval, notice: Option<&Notice>) -> Value {
    let f = RequestFacts::new(a, FULL_TEXT_COMMAND);
    let id = f.id.clone();
    let full = FullText {
        command: FULL_TEXT_COMMAND,
        request_id: &id,
    };
    let details: Vec<Value> = f
        .details
        .iter()
        .map(|(k, v)| json!({ "label": format!("{k}: "), "value": v }))
        .chain((f.details_omitted > 0).then(|| {
            json!({
                "label": "…",
                "value": format!(
                    " {} more not shown: {FULL_TEXT_COMMAND} {id} shows all",
                    f.details_omitted
                ),
            })
        }))
        .collect();
    let approvals: Vec<String> = f
        .approvals
        .iter()
        .map(|d| {
            let mut s = format!("✔ {} at {}", d.who, d.at);
            if let Some(c) = &d.comment {
                s.push_str(&format!(": {c}"));
            }
            s
        })
        .collect();
    let progress = if a.status == Status::Pending {
        format!(
            "**Approvals: {} of {}** needed from people other than the requester",
            a.approvals.len(),
            a.required_approvals
        )
    } else {
        format!(
            "Approvals: {} of {}",
            a.approvals.len(),
            a.required_approvals
        )
    };
    let note = f.outcome_note.clone().unwrap_or_default();
    // The outcome as a bold head and a plain rest (a person's comment).
    let outcome = match (&a.denial, a.status) {
        (Some(d), Status::Denied) => Some(json!({
            "head": format!("Denied by {}", view::shown_principal(&text::visible(&d.principal, false))),
            "rest": format!(" at {}. Reason: {note}", view::utc(&d.at)),
        })),
        (_, Status::Pending) => None,
        _ => Some(json!({
            "head": "",
            "rest": format!(
                "{note}{}",
                f.decided_at.as_deref().map(|t| format!(" ({t})")).unwrap_or_default()
            ),
        })),
    };
    let approvers = (!f.approvers.is_empty()).then(|| {
        format!(
            "Who may decide: {}{}",
            f.approvers.join(", "),
            if f.approvers_omitted > 0 {
                format!(" and {} more", f.approvers_omitted)
            } else {
                String::new()
            }
        )
    });
    let mut facts = vec![
        line("Risk: ", risk_label(a.risk)),
        line("Action: ", f.action.clone()),
        line("Resource: ", f.resource.clone()),
        line("Requester: ", f.requester.clone()),
    ];
    if let Some(p) = &f.on_behalf_of {
        facts.push(line("On behalf of: ", p.clone()));
    }
    facts.push(line("Policy rule: ", f.policy_rule.clone()));
    facts.push(line("Expires: ", f.expires.clone()));
    for e in &f.escalations {
        let rest = e.strip_prefix("Escalated to ").unwrap_or(e);
        facts.push(line("Escalated to ", rest.to_string()));
    }
    facts.push(line("Request id: ", id.clone()));
    json!({
        "id": id,
        "final": a.status.is_final(),
        "status": a.status.as_str(),
        "status_line": view::status_label(a.status),
        "status_style": status_style(a.status),
        "notice": notice.map(|n| text::cut_to(&n.text, MAX_NOTICE, false, full).0),
        "notice_style": notice.map(|n| n.tone.style()).unwrap_or("default"),
        "heading": {
            "who": f.requester,
            "action": f.action,
            "resource": f.resource,
        },
        "summary": f.summary,
        "facts": facts,
        "justification": f.justification,
        "details": details,
        "progress": progress,
        "approvals": approvals,
        "outcome": outcome,
        "approvers": approvers,
        "payload_sha256": a.payload_sha256,
        "payload_line": format!("Payload SHA-256 {}", escape(&a.payload_sha256, 64)),
    })
}
