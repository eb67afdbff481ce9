//! Sample contexts that take every branch of every template, rendered at
//! start and in tests. Their agent text carries [`CANARY`], live markdown:
//! found as itself in a TextBlock or a fact, a template put agent text
//! where Teams formats it.

use serde_json::{Value, json};

use super::audit::audit_context;
use super::request::request_context;
use super::{Notice, Tone};
use crate::channels::text::MAX_DETAILS;
use crate::domain::{Principal, Risk, Status};
use crate::service::audit_query::AuditAnswer;
use crate::store::requests::{Approval, DecisionView, PolicyRef};
use crate::store::trail::AuditEventView;

/// Live markdown in every sample agent text (see `Templates::load`).
pub const CANARY: &str = "**canary**";

/// The first TextBlock text or fact holding [`CANARY`] as itself.
pub fn live_agent_markdown(v: &Value) -> Option<String> {
    match v {
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str);
            let mut texts: Vec<&str> = vec![];
            if kind == Some("TextBlock")
                && let Some(t) = map.get("text").and_then(Value::as_str)
            {
                texts.push(t);
            }
            if kind == Some("FactSet") {
                for f in map
                    .get("facts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    texts.extend(
                        ["title", "value"]
                            .iter()
                            .filter_map(|k| f.get(*k)?.as_str()),
                    );
                }
            }
            if let Some(t) = texts.into_iter().find(|t| t.contains(CANARY)) {
                return Some(t.to_string());
            }
            map.values().find_map(live_agent_markdown)
        }
        Value::Array(list) => list.iter().find_map(live_agent_markdown),
        _ => None,
    }
}

/// Sample contexts that take every branch of every template; rendered at
/// start and in tests. Agent text carries [`CANARY`].
pub fn samples() -> Vec<(&'static str, Value)> {
    let mut details = serde_json::Map::new();
    for i in 0..(MAX_DETAILS + 2) {
        details.insert(format!("key_{i}"), json!(i));
    }
    details.insert(
        "note".into(),
        json!("[click](https://evil.example) <at>all</at> **canary**"),
    );
    let decision = |p: &str, v: &str, c: Option<&str>| DecisionView {
        principal: p.into(),
        verdict: v.into(),
        comment: c.map(Into::into),
        channel: "teams".into(),
        at: "2026-01-31T12:00:00.000Z".into(),
    };
    let base = Approval {
        id: uuid::Uuid::nil(),
        status: Status::Pending,
        action: "db.export".into(),
        resource: "prod/customers/**canary**".into(),
        summary: "Export **all** customers [here](https://evil.example) **canary**".into(),
        justification: Some("Quarterly audit\n# heading **canary**".into()),
        details,
        risk: Risk::High,
        requester: Principal::parse("agent:deploy-bot").expect("valid"),
        on_behalf_of: Some(Principal::parse("user:alice@example.com").expect("valid")),
        policy: PolicyRef {
            rule: "prod-exports".into(),
            version: "0".repeat(64),
        },
        required_approvals: 2,
        approvers: vec![Principal::parse("user:bob@example.com").expect("valid")],
        on_expiry: "deny".into(),
        approvals: vec![decision("user:bob@example.com", "approve", Some("ok"))],
        denial: None,
        payload_sha256: "a".repeat(64),
        callback_url: None,
        created_at: "2026-01-31T11:00:00.000Z".into(),
        expires_at: "2026-01-31T12:00:00.000Z".into(),
        decided_at: None,
        decided_by: None,
        reason: None,
        key_id: uuid::Uuid::nil(),
        key_owner: None,
        slack_channel: None,
        teams_conversation: None,
        idempotency_hash: None,
        decisions: vec![],
        step_up: false,
        escalations: vec![],
    };
    let mut minimal = base.clone();
    minimal.details.clear();
    minimal.justification = None;
    minimal.on_behalf_of = None;
    minimal.approvers.clear();
    minimal.approvals.clear();
    let mut denied = base.clone();
    denied.status = Status::Denied;
    denied.denial = Some(decision(
        "user:dave@example.com",
        "deny",
        Some("no **canary**"),
    ));
    denied.decided_at = Some("2026-01-31T12:00:00.000Z".into());
    let mut approved = minimal.clone();
    approved.status = Status::Approved;
    approved.reason = Some("approved by 1 of 1 required **canary**".into());
    let notice = Notice::new(Tone::Attention, "You requested this action. **canary**");
    let event = AuditEventView {
        seq: 1,
        ts: "2026-01-31T12:00:00.000Z".into(),
        actor: "user:bob@example.com".into(),
        request_id: Some(uuid::Uuid::nil().to_string()),
        action: Some("db.export".into()),
        kind: "decision.deny".into(),
        data: json!({ "comment": "[x](y) **canary**", "channel": "teams" }),
        prev_hash: String::new(),
        hash: String::new(),
    };
    let verify = |ok: bool| crate::channels::kit::samples::verify_result(ok, "hash mismatch");
    let answers = vec![
        AuditAnswer::Requests {
            title: "Recent requests".into(),
            items: vec![base.clone(), denied.clone()],
            page: 1,
            more: true,
        },
        AuditAnswer::Requests {
            title: "Pending requests".into(),
            items: vec![],
            page: 2,
            more: false,
        },
        AuditAnswer::Timeline {
            request: Box::new(base.clone()),
            events: vec![event.clone()],
        },
        AuditAnswer::Timeline {
            request: Box::new(minimal.clone()),
            events: vec![],
        },
        AuditAnswer::Person {
            principal: Principal::parse("user:bob@example.com").expect("valid"),
            events: vec![event],
            page: 1,
            more: false,
        },
        AuditAnswer::Person {
            principal: Principal::parse("user:bob@example.com").expect("valid"),
            events: vec![],
            page: 1,
            more: true,
        },
        AuditAnswer::Verify(verify(true)),
        AuditAnswer::Verify(verify(false)),
        AuditAnswer::Help(crate::domain::audit_command::HELP),
    ];
    let mut out = vec![
        ("request.json", request_context(&base, None)),
        ("request.json", request_context(&base, Some(&notice))),
        ("request.json", request_context(&minimal, None)),
        ("request.json", request_context(&denied, Some(&notice))),
        ("request.json", request_context(&approved, None)),
    ];
    for a in &answers {
        out.push(("audit.json", audit_context(a, "audit pending page:1")));
    }
    for tone in [Tone::Good, Tone::Warning, Tone::Attention] {
        out.push((
            "notice.json",
            json!({ "style": tone.style(), "title": "Title", "text": format!("Text {CANARY}") }),
        ));
    }
    out
}
