//! A request as Slack templates see it: the kit's facts
//! ([`RequestFacts`]: the same values, labels and limits as every channel)
//! escaped for a `plain_text` object, which is where the built-in
//! templates put them. `progress` and `outcome` are the only mrkdwn lines
//! (they carry mentions); what they hold of anyone else's text went
//! through [`limits::mrkdwn`].

use std::collections::HashMap;

use serde::Serialize;

use super::super::limits::{escape, mrkdwn};
use crate::channels::kit::view::{self, RequestFacts, shown_principal};
use crate::domain::Status;
use crate::store::requests::Approval;

/// Principals known to have a Slack account, to mention them (`<@U…>`).
pub type SlackNames = HashMap<String, String>;

/// The command that shows a request in full, for the notes on cut fields.
pub const FULL_TEXT_COMMAND: &str = "/audit";

#[derive(Debug, Serialize)]
pub struct RequestView {
    pub id: String,
    pub status: &'static str,
    pub status_emoji: &'static str,
    pub pending: bool,
    pub risk: &'static str,
    pub risk_label: String,
    pub risk_emoji: &'static str,
    pub action: String,
    pub resource: String,
    pub summary: String,
    pub justification: Option<String>,
    pub details: Vec<Detail>,
    pub details_omitted: usize,
    pub requester: String,
    pub on_behalf_of: Option<String>,
    pub policy_rule: String,
    pub policy_version: String,
    /// A Slack date token: shown in each reader's own time zone.
    pub expires: String,
    pub expires_utc: String,
    pub created: String,
    pub payload_sha256: String,
    pub payload_sha256_short: String,
    pub required_approvals: u32,
    /// mrkdwn: mentions of the approvers.
    pub approvals: Vec<String>,
    /// mrkdwn: "1 of 2 approvals — @bob".
    pub progress: String,
    /// Ask "are you sure?" before an approval (high and critical risk).
    pub confirm: bool,
    /// What the buttons carry back: the request and the payload hash shown.
    pub button_value: String,
    /// mrkdwn: the final banner, who decided and when. None while pending.
    pub outcome: Option<String>,
    /// plain_text: the denier's comment or the final state's reason.
    pub outcome_note: Option<String>,
    /// plain_text: who decided.
    pub decided_by: Option<String>,
    /// Notification text for clients that cannot show blocks.
    pub fallback: String,
}

#[derive(Debug, Serialize)]
pub struct Detail {
    pub key: String,
    pub value: String,
}

impl RequestView {
    pub fn new(a: &Approval, names: &SlackNames) -> Self {
        let f = RequestFacts::new(a, FULL_TEXT_COMMAND);
        // The kit cut first (on the text as the reader will see it); escaping
        // comes after, so an entity is never cut and the hidden count is in
        // characters the reader would have seen.
        let approvals: Vec<String> = f
            .approvals
            .iter()
            .map(|d| person(&d.principal, names))
            .collect();
        let mut progress = format!("*{}*", f.progress());
        if !approvals.is_empty() {
            progress.push_str(" — ");
            progress.push_str(&approvals.join(", "));
        }
        // Escalation widened who may decide: said under the count.
        for e in &f.escalations {
            progress.push('\n');
            progress.push_str(&mrkdwn(e));
        }
        let fallback = match a.status {
            Status::Pending => format!(
                "Approval needed: {} on {} ({} risk)",
                mrkdwn(&a.action),
                mrkdwn(&a.resource),
                a.risk.as_str()
            ),
            s => format!(
                "{}: {} on {}",
                title_case(s.as_str()),
                mrkdwn(&a.action),
                mrkdwn(&a.resource)
            ),
        };
        Self {
            status: a.status.as_str(),
            status_emoji: view::status_emoji(a.status),
            pending: a.status == Status::Pending,
            risk: a.risk.as_str(),
            risk_label: a.risk.as_str().to_uppercase(),
            risk_emoji: view::risk_emoji(a.risk),
            action: escape(&f.action),
            resource: escape(&f.resource),
            summary: escape(&f.summary),
            justification: f.justification.as_deref().map(escape),
            details: f
                .details
                .iter()
                .map(|(k, v)| Detail {
                    key: escape(k),
                    value: escape(v),
                })
                .collect(),
            details_omitted: f.details_omitted,
            requester: escape(&f.requester),
            on_behalf_of: f.on_behalf_of.as_deref().map(escape),
            policy_rule: escape(&f.policy_rule),
            policy_version: escape(&f.policy_version_short),
            expires: slack_date(&a.expires_at),
            expires_utc: escape(&f.expires),
            created: escape(&f.created),
            payload_sha256: escape(&f.payload_sha256),
            payload_sha256_short: escape(&f.payload_sha256_short),
            required_approvals: f.required_approvals,
            confirm: f.confirm,
            button_value: ButtonValue {
                request_id: f.id.clone(),
                payload_sha256: Some(a.payload_sha256.clone()),
            }
            .encode(),
            outcome: outcome(a, &f, &approvals, names),
            outcome_note: f.outcome_note.as_deref().map(escape),
            decided_by: f.decided_by.as_deref().map(escape),
            approvals,
            progress,
            fallback,
            id: f.id,
        }
    }
}

/// The final banner (mrkdwn): who decided and when. What they said is in
/// `outcome_note`, as plain text.
fn outcome(
    a: &Approval,
    f: &RequestFacts,
    approvals: &[String],
    names: &SlackNames,
) -> Option<String> {
    let at = escape(f.decided_at.as_deref().unwrap_or_default());
    let by = a
        .decided_by
        .as_deref()
        .map(|p| person(p, names))
        .unwrap_or_else(|| "the service".into());
    Some(match a.status {
        Status::Pending => return None,
        Status::Approved if !approvals.is_empty() => {
            format!("✅ *Approved* by {} · {at}", approvals.join(", "))
        }
        Status::Approved => format!("✅ *Approved* by {by} · {at}"),
        Status::Denied => format!("⛔ *Denied* by {by} · {at}"),
        Status::Expired => format!("⌛ *Expired* · {at}"),
        Status::Cancelled => format!("🚫 *Cancelled* by {by} · {at}"),
    })
}

/// A principal in a mrkdwn line: a Slack mention when we know the
/// account, else the e-mail address (users) or the principal itself.
pub fn person(principal: &str, names: &SlackNames) -> String {
    if let Some(user) = names.get(principal)
        && !user.is_empty()
        && user.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return format!("<@{user}>");
    }
    mrkdwn(shown_principal(principal))
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A stored time as a Slack date token, with UTC as the fallback text.
fn slack_date(s: &str) -> String {
    match crate::clock::parse(s) {
        Some(t) => format!(
            "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
            t.timestamp(),
            escape(&view::utc(s))
        ),
        None => escape(s),
    }
}

/// What Approve and Deny carry back, so a decision binds to the payload
/// the approver was shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ButtonValue {
    pub request_id: String,
    /// Always set on buttons we render. Optional here only so that a value
    /// without it is read, then refused and audited as unbound, rather
    /// than dismissed as not ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
}

impl ButtonValue {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("strings serialize")
    }
    /// Strict, like every JSON we read: a value with a key twice is not
    /// one of ours.
    pub fn decode(s: &str) -> Option<Self> {
        crate::json::from_slice_strict(s.as_bytes()).ok()
    }
}
