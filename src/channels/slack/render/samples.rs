//! Sample data for checking templates at start and in tests: requests in
//! every state and every audit answer, full of hostile and oversized agent
//! text.

use serde_json::{Value, json};

use crate::domain::audit_command::HELP;
use crate::domain::{Principal, Risk, Status};
use crate::service::audit_query::AuditAnswer;
use crate::store::requests::{Approval, DecisionView, PolicyRef};
use crate::store::trail::AuditEventView;

/// A live mrkdwn marker in every sample agent text: it must never reach
/// a mrkdwn object as itself (see `Templates::check`).
pub const CANARY: &str = "*canary*";

/// Requests in every state, full of hostile and oversized agent text.
pub fn approvals() -> Vec<Approval> {
    let base = hostile();
    let mut out = vec![base.clone()];
    let decision = |p: &str, v: &str, c: Option<&str>| DecisionView {
        principal: p.into(),
        verdict: v.into(),
        comment: c.map(Into::into),
        channel: "slack".into(),
        at: "2026-01-31T12:05:00.000Z".into(),
    };
    let mut partial = base.clone();
    partial.required_approvals = 2;
    partial.approvals = vec![decision("user:bob@example.com", "approve", None)];
    out.push(partial.clone());
    let mut approved = partial.clone();
    approved.status = Status::Approved;
    approved
        .approvals
        .push(decision("user:carol@example.com", "approve", None));
    approved.decided_at = Some("2026-01-31T12:06:00.000Z".into());
    approved.decided_by = Some("user:carol@example.com".into());
    out.push(approved);
    let mut denied = base.clone();
    denied.status = Status::Denied;
    denied.denial = Some(decision(
        "user:bob@example.com",
        "deny",
        Some("<!here> not <@U1> during the freeze\n<https://evil|click> *canary*"),
    ));
    denied.decided_by = Some("user:bob@example.com".into());
    denied.decided_at = Some("2026-01-31T12:06:00.000Z".into());
    out.push(denied);
    for (status, by) in [
        (Status::Expired, "system:countersign"),
        (Status::Cancelled, "agent:deploy-bot"),
    ] {
        let mut a = base.clone();
        a.status = status;
        a.decided_by = Some(by.into());
        a.decided_at = Some("2026-01-31T12:20:00.000Z".into());
        a.reason = Some(format!("{status} <!channel> *canary*"));
        out.push(a);
    }
    let mut quiet = base;
    quiet.risk = Risk::Low;
    quiet.justification = None;
    quiet.on_behalf_of = None;
    quiet.details = Default::default();
    out.push(quiet);
    out
}

pub fn hostile() -> Approval {
    let evil = "<!channel> <@U123> <https://evil|click> & more *canary*";
    let mut details = serde_json::Map::new();
    for i in 0..30 {
        details.insert(format!("key {i} {evil}"), json!(evil.repeat(40)));
    }
    details.insert("rows".into(), json!(120000));
    Approval {
        id: uuid::Uuid::now_v7(),
        status: Status::Pending,
        action: "db.export".into(),
        resource: format!("prod/{}", evil.repeat(20)),
        summary: evil.repeat(200),
        justification: Some(evil.repeat(200)),
        details,
        risk: Risk::Critical,
        requester: Principal::parse("agent:deploy-bot").unwrap(),
        on_behalf_of: Some(Principal::parse("user:alice@example.com").unwrap()),
        policy: PolicyRef {
            rule: "prod-exports".into(),
            version: "ab".repeat(32),
        },
        required_approvals: 1,
        approvers: vec![],
        on_expiry: "deny".into(),
        approvals: vec![],
        denial: None,
        payload_sha256: "cd".repeat(32),
        callback_url: None,
        created_at: "2026-01-31T12:00:00.000Z".into(),
        expires_at: "2026-01-31T12:15:00.000Z".into(),
        decided_at: None,
        decided_by: None,
        reason: None,
        key_id: uuid::Uuid::now_v7(),
        key_owner: Some(Principal::parse("user:olivia@example.com").unwrap()),
        slack_channel: None,
        teams_conversation: None,
        idempotency_hash: None,
        decisions: vec![],
        step_up: false,
        escalations: vec![],
    }
}

pub fn audit_answers() -> Vec<(AuditAnswer, u32)> {
    let event = |kind: &str, data: Value| AuditEventView {
        seq: 1,
        ts: "2026-01-31T12:00:00.000Z".into(),
        actor: "user:bob@example.com".into(),
        request_id: Some(uuid::Uuid::nil().to_string()),
        action: Some("db.export".into()),
        kind: kind.into(),
        data,
        prev_hash: "00".repeat(32),
        hash: "11".repeat(32),
    };
    let events: Vec<AuditEventView> = (0..60)
        .map(|i| {
            event(
                if i % 2 == 0 { "decision.approve" } else { "decision.blocked" },
                json!({ "channel": "slack", "comment": "<!channel> ok *canary*".repeat(50), "message": "<@U1> *canary*" }),
            )
        })
        .collect();
    let verify =
        |ok: bool| crate::channels::kit::samples::verify_result(ok, "hash mismatch <!channel>");
    vec![
        (
            AuditAnswer::Requests {
                title: "Pending requests".into(),
                items: approvals(),
                page: 1,
                more: true,
            },
            1,
        ),
        (
            AuditAnswer::Requests {
                title: "Recent requests".into(),
                items: vec![],
                page: 2,
                more: false,
            },
            2,
        ),
        (
            AuditAnswer::Timeline {
                request: Box::new(hostile()),
                events: events.clone(),
            },
            1,
        ),
        (
            AuditAnswer::Person {
                principal: Principal::parse("user:bob@example.com").unwrap(),
                events,
                page: 1,
                more: true,
            },
            1,
        ),
        (AuditAnswer::Verify(verify(true)), 1),
        (AuditAnswer::Verify(verify(false)), 1),
        (AuditAnswer::Help(HELP), 1),
    ]
}
