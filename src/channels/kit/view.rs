//! One view of a request for every channel: which facts an approver is
//! shown, how they are labelled, how times read, and how long each may
//! be.
//!
//! Every agent-supplied value (action, resource, summary, justification,
//! details, principals, comments, reasons) is made visible and cut to the
//! shared limits here ([`text::cut`]: a cut value says how much is hidden
//! and which command shows it all), so the same request shows the same
//! facts on Slack and Teams. What comes out is not yet escaped: a platform
//! runs its own escaper over each value for the place its template puts
//! it (Slack's entities for `plain_text`, nothing for a Teams `TextRun`).

use serde_json::Value;

use crate::channels::text::{self, FullText, Limit};
use crate::clock;
use crate::domain::{Risk, Status};
use crate::store::requests::Approval;

/// A request as every channel shows it (not yet escaped).
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub id: String,
    pub status: Status,
    pub risk: Risk,
    pub action: String,
    pub resource: String,
    pub summary: String,
    pub justification: Option<String>,
    /// At most [`text::MAX_DETAILS`], in the request's order.
    pub details: Vec<(String, String)>,
    pub details_omitted: usize,
    /// Principals as a person reads them (users by e-mail address).
    pub requester: String,
    pub on_behalf_of: Option<String>,
    pub decided_by: Option<String>,
    pub policy_rule: String,
    pub policy_version_short: String,
    pub payload_sha256: String,
    pub payload_sha256_short: String,
    pub created: String,
    pub expires: String,
    pub decided_at: Option<String>,
    pub required_approvals: u32,
    pub approvals: Vec<ApprovalFact>,
    /// The denier's comment, else the final state's reason; None while
    /// pending or when there is none.
    pub outcome_note: Option<String>,
    /// The people who may decide, while pending (at most ten).
    pub approvers: Vec<String>,
    pub approvers_omitted: usize,
    /// Ask "are you sure?" before an approval (high and critical risk).
    pub confirm: bool,
    /// "Escalated to oncall at …", one per escalation.
    pub escalations: Vec<String>,
}

/// One approval given so far.
#[derive(Debug, Clone)]
pub struct ApprovalFact {
    /// The principal as stored (for mentions).
    pub principal: String,
    /// As a person reads it.
    pub who: String,
    pub at: String,
    pub comment: Option<String>,
}

/// How many approvers are named on a pending message.
const MAX_APPROVERS: usize = 10;

impl RequestFacts {
    /// `command` is the platform's command that shows a request in full
    /// (`/audit`, `audit`), for the notes on cut fields.
    pub fn new(a: &Approval, command: &str) -> Self {
        let id = a.id.to_string();
        let full = FullText {
            command,
            request_id: &id,
        };
        let cut = |s: &str, limit: Limit, multiline: bool| text::cut(s, limit, multiline, full).0;
        let who = |p: &str| cut(shown_principal(p), Limit::Principal, false);
        let details = a
            .details
            .iter()
            .take(text::MAX_DETAILS)
            .map(|(k, v)| {
                (
                    cut(k, Limit::DetailKey, false),
                    cut(&detail_value(v), Limit::DetailValue, true),
                )
            })
            .collect();
        let outcome_note = match a.status {
            Status::Pending => None,
            Status::Denied => a
                .denial
                .as_ref()
                .and_then(|d| d.comment.as_deref())
                .filter(|c| !c.trim().is_empty())
                .map(|c| cut(c, Limit::Comment, true))
                .or_else(|| a.reason.as_deref().map(|r| cut(r, Limit::Reason, true))),
            _ => a.reason.as_deref().map(|r| cut(r, Limit::Reason, true)),
        }
        .filter(|n| !n.is_empty());
        let pending = a.status == Status::Pending;
        Self {
            status: a.status,
            risk: a.risk,
            action: cut(&a.action, Limit::Action, false),
            resource: cut(&a.resource, Limit::Resource, false),
            summary: cut(&a.summary, Limit::Summary, true),
            justification: a
                .justification
                .as_deref()
                .filter(|j| !j.trim().is_empty())
                .map(|j| cut(j, Limit::Justification, true)),
            details,
            details_omitted: a.details.len().saturating_sub(text::MAX_DETAILS),
            requester: who(a.requester.as_str()),
            on_behalf_of: a.on_behalf_of.as_ref().map(|p| who(p.as_str())),
            decided_by: a.decided_by.as_deref().map(who),
            policy_rule: cut(&a.policy.rule, Limit::PolicyRule, false),
            policy_version_short: a.policy.version.chars().take(12).collect(),
            payload_sha256: a.payload_sha256.clone(),
            payload_sha256_short: a.payload_sha256.chars().take(12).collect(),
            created: utc(&a.created_at),
            expires: utc(&a.expires_at),
            decided_at: a.decided_at.as_deref().map(utc),
            required_approvals: a.required_approvals,
            approvals: a
                .approvals
                .iter()
                .map(|d| ApprovalFact {
                    principal: d.principal.clone(),
                    who: who(&d.principal),
                    at: utc(&d.at),
                    comment: d
                        .comment
                        .as_deref()
                        .filter(|c| !c.trim().is_empty())
                        .map(|c| cut(c, Limit::Comment, false)),
                })
                .collect(),
            outcome_note,
            approvers: if pending {
                a.approvers
                    .iter()
                    .take(MAX_APPROVERS)
                    .map(|p| who(p.as_str()))
                    .collect()
            } else {
                vec![]
            },
            approvers_omitted: if pending {
                a.approvers.len().saturating_sub(MAX_APPROVERS)
            } else {
                0
            },
            confirm: matches!(a.risk, Risk::High | Risk::Critical),
            escalations: a
                .escalations
                .iter()
                .map(|e| {
                    format!(
                        "Escalated to {} at {}",
                        cut(&e.to, Limit::Reason, false),
                        utc(&e.at)
                    )
                })
                .collect(),
            id,
        }
    }

    /// "1 of 2 approvals".
    pub fn progress(&self) -> String {
        let unit = if self.required_approvals == 1 {
            "approval"
        } else {
            "approvals"
        };
        format!(
            "{} of {} {unit}",
            self.approvals.len(),
            self.required_approvals
        )
    }
}

/// A principal as a person reads it: users by e-mail address.
pub fn shown_principal(p: &str) -> &str {
    p.strip_prefix("user:").unwrap_or(p)
}

/// A detail's value as text: strings as they are, anything else as JSON.
pub fn detail_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A stored time as `2026-01-31 12:00 UTC` (itself if it is not a time).
pub fn utc(s: &str) -> String {
    clock::parse(s)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| s.to_string())
}

/// A stored time to the second, for audit events.
pub fn utc_seconds(s: &str) -> String {
    clock::parse(s)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| s.to_string())
}

/// The status as a word with its sign, the same everywhere.
pub fn status_label(s: Status) -> &'static str {
    match s {
        Status::Pending => "⏳ Approval needed",
        Status::Approved => "✅ Approved",
        Status::Denied => "⛔ Denied",
        Status::Expired => "⌛ Expired",
        Status::Cancelled => "🚫 Cancelled",
    }
}

pub fn status_emoji(s: Status) -> &'static str {
    match s {
        Status::Pending => "⏳",
        Status::Approved => "✅",
        Status::Denied => "⛔",
        Status::Expired => "⌛",
        Status::Cancelled => "🚫",
    }
}

pub fn risk_emoji(r: Risk) -> &'static str {
    match r {
        Risk::Low => "🟢",
        Risk::Medium => "🟡",
        Risk::High => "🟠",
        Risk::Critical => "🔴",
    }
}

/// The text of the request's summary, justification and details in full,
/// made visible but not cut: what the notes on cut fields promise the
/// audit command shows. (label, text) pairs, in order.
pub fn full_payload(a: &Approval) -> Vec<(&'static str, String)> {
    let mut out = vec![("Summary", text::visible(&a.summary, true))];
    if let Some(j) = a.justification.as_deref().filter(|j| !j.trim().is_empty()) {
        out.push(("Justification", text::visible(j, true)));
    }
    if !a.details.is_empty() {
        let lines: Vec<String> = a
            .details
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}: {}",
                    text::visible(k, false),
                    text::visible(&detail_value(v), true)
                )
            })
            .collect();
        out.push(("Details", lines.join("\n")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_shows_the_same_facts_whatever_the_command() {
        let a = crate::channels::slack::render::samples::hostile();
        let slack = RequestFacts::new(&a, "/audit");
        let teams = RequestFacts::new(&a, "audit");
        // Only the command in the notes on cut fields differs.
        assert_eq!(
            slack.summary.chars().take(500).collect::<String>(),
            teams.summary.chars().take(500).collect::<String>()
        );
        assert!(
            slack
                .summary
                .contains(&format!("/audit {} shows all", a.id))
        );
        assert!(
            teams
                .summary
                .contains(&format!(" audit {} shows all", a.id))
        );
        assert_eq!(slack.details.len(), text::MAX_DETAILS);
        assert_eq!(slack.details_omitted, teams.details_omitted);
        assert_eq!(slack.on_behalf_of.as_deref(), Some("alice@example.com"));
        assert_eq!(slack.expires, "2026-01-31 12:15 UTC");
    }
}
