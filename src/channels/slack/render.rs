//! Block Kit from templates: the approval message, the deny modal and the
//! `/audit` answers.
//!
//! Templates live in `templates/slack/` and are compiled into the binary;
//! a file of the same name under `<templates_dir>/slack/` replaces one.
//! Each renders a JSON array of blocks. What a template sees was prepared
//! here: every string an agent supplied is already escaped for mrkdwn and
//! shortened, so an override cannot forget to. The rendered JSON is then
//! brought within Slack's limits ([`limits::fit`]) and parsed into
//! slack-morphism's Block Kit types, so a template that produces something
//! Slack would not accept fails here, loudly, not at Slack.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Value, json};
use slack_morphism::prelude::*;

use super::limits::{self, clip, escape, escape_clip, mrkdwn};
use crate::channels::text::{self, Limit};
use crate::domain::audit_command::HELP;
use crate::domain::{Risk, Status};
use crate::service::audit_query::AuditAnswer;
use crate::service::audit_query::VerifyResult;
use crate::store::requests::Approval;
use crate::store::trail::AuditEventView;

pub const REQUEST: &str = "request.json.j2";
pub const DENY_MODAL: &str = "deny_modal.json.j2";
pub const AUDIT_REQUESTS: &str = "audit_requests.json.j2";
pub const AUDIT_TIMELINE: &str = "audit_timeline.json.j2";
pub const AUDIT_PERSON: &str = "audit_person.json.j2";
pub const AUDIT_VERIFY: &str = "audit_verify.json.j2";
pub const AUDIT_HELP: &str = "audit_help.json.j2";

const BUILT_IN: &[(&str, &str)] = &[
    (
        REQUEST,
        include_str!("../../../templates/slack/request.json.j2"),
    ),
    (
        DENY_MODAL,
        include_str!("../../../templates/slack/deny_modal.json.j2"),
    ),
    (
        AUDIT_REQUESTS,
        include_str!("../../../templates/slack/audit_requests.json.j2"),
    ),
    (
        AUDIT_TIMELINE,
        include_str!("../../../templates/slack/audit_timeline.json.j2"),
    ),
    (
        AUDIT_PERSON,
        include_str!("../../../templates/slack/audit_person.json.j2"),
    ),
    (
        AUDIT_VERIFY,
        include_str!("../../../templates/slack/audit_verify.json.j2"),
    ),
    (
        AUDIT_HELP,
        include_str!("../../../templates/slack/audit_help.json.j2"),
    ),
    (
        "audit_pager.json.j2",
        include_str!("../../../templates/slack/audit_pager.json.j2"),
    ),
];

/// Action ids of the buttons and the modal, shared with the interactivity
/// handler.
pub const APPROVE: &str = "countersign_approve";
pub const DENY: &str = "countersign_deny";
pub const AUDIT_PAGE: &str = "countersign_audit_page";
pub const DENY_CALLBACK: &str = "countersign_deny";
pub const REASON: &str = "reason";

/// Events per page of a timeline (the other answers are paged by the query).
pub const TIMELINE_PAGE: usize = 20;

/// Principals known to have a Slack account, to mention them (`<@U…>`).
pub type SlackNames = HashMap<String, String>;

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The compiled-in templates, each replaced by `<dir>/slack/<name>` if
    /// that file exists. Fails on a syntax error, so a bad override stops
    /// the service at start instead of silently breaking approvals.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // Every template renders JSON: `{{ x }}` prints x JSON-encoded.
        env.set_auto_escape_callback(|_| AutoEscape::Json);
        for (name, built_in) in BUILT_IN {
            let path = dir.map(|d| d.join("slack").join(name));
            let source = match path {
                Some(p) if p.exists() => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read Slack template {}", p.display()))?,
                _ => built_in.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .with_context(|| format!("Slack template {name}"))?;
        }
        let t = Self { env };
        t.check()?;
        Ok(t)
    }

    /// Renders one template into blocks within Slack's limits.
    pub fn blocks(&self, name: &str, ctx: Value) -> anyhow::Result<Vec<SlackBlock>> {
        let text = self
            .env
            .get_template(name)?
            .render(minijinja::value::Serde(&ctx))
            .with_context(|| format!("rendering Slack template {name}"))?;
        let mut value: Value = serde_json::from_str(&text)
            .with_context(|| format!("Slack template {name} did not render valid JSON"))?;
        limits::fit(&mut value);
        let blocks: Vec<SlackBlock> = serde_json::from_value(value)
            .with_context(|| format!("Slack template {name} did not render Block Kit blocks"))?;
        // slack-morphism keeps anything it cannot type as `Unknown`: a
        // misspelt block type, or a known one missing a required field.
        if let Some(SlackBlock::Unknown(v)) =
            blocks.iter().find(|b| matches!(b, SlackBlock::Unknown(_)))
        {
            let what = v.get("type").and_then(Value::as_str).unwrap_or("?");
            anyhow::bail!(
                "Slack template {name} rendered a block that is not valid Block Kit (type '{what}')"
            );
        }
        Ok(blocks)
    }

    /// The approval message for a request in its current state.
    pub fn request_message(
        &self,
        a: &Approval,
        names: &SlackNames,
    ) -> anyhow::Result<SlackMessageContent> {
        let r = RequestView::new(a, names);
        let blocks = self.blocks(REQUEST, json!({ "r": r }))?;
        Ok(SlackMessageContent::new()
            .with_text(clip(&r.fallback, limits::MAX_FALLBACK))
            .with_blocks(blocks))
    }

    /// The modal asking for a denial's reason; `metadata` comes back with
    /// the submission.
    pub fn deny_modal(&self, a: &Approval, metadata: String) -> anyhow::Result<SlackView> {
        let r = RequestView::new(a, &SlackNames::new());
        let blocks = self.blocks(DENY_MODAL, json!({ "r": r }))?;
        Ok(SlackView::Modal(
            SlackModalView::new("Deny request".into(), blocks)
                .with_submit("Deny".into())
                .with_close("Cancel".into())
                .with_callback_id(DENY_CALLBACK.into())
                .with_private_metadata(metadata),
        ))
    }

    /// An `/audit` answer. `query` is the command text without `page:`,
    /// to offer the next page.
    pub fn audit(
        &self,
        answer: &AuditAnswer,
        page: u32,
        query: &str,
        names: &SlackNames,
    ) -> anyhow::Result<SlackMessageContent> {
        let next = |more: bool| more.then(|| Next::new(query, page + 1));
        let (name, ctx, fallback) = match answer {
            AuditAnswer::Requests {
                title,
                items,
                page,
                more,
            } => (
                AUDIT_REQUESTS,
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
                    AUDIT_TIMELINE,
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
                AUDIT_PERSON,
                json!({ "a": {
                    "principal": escape(principal.as_str()),
                    "events": events.iter().map(EventLine::new).collect::<Vec<_>>(),
                    "page": page, "next": next(*more),
                }}),
                format!("Activity of {principal}"),
            ),
            AuditAnswer::Verify(v) => (
                AUDIT_VERIFY,
                json!({ "a": verify_view(v) }),
                format!(
                    "Audit chain {}",
                    if v.ok { "verified" } else { "is broken" }
                ),
            ),
            AuditAnswer::Help(usage) => (
                AUDIT_HELP,
                json!({ "a": help_view(usage) }),
                usage.to_string(),
            ),
        };
        let blocks = self.blocks(name, ctx)?;
        Ok(SlackMessageContent::new()
            .with_text(escape_clip(&fallback, limits::MAX_FALLBACK))
            .with_blocks(blocks))
    }

    /// Renders every template once with sample data.
    /// The sample agent text carries [`samples::CANARY`], a live mrkdwn
    /// marker: finding it unescaped in a mrkdwn object means a template
    /// (an operator's override, say) put agent text where Slack would
    /// format it, and the service refuses to start with it.
    fn check(&self) -> anyhow::Result<()> {
        let names = SlackNames::new();
        let inert = |name: &str, v: Value| match live_agent_markup(&v) {
            Some(text) => Err(anyhow::anyhow!(
                "Slack template {name} puts agent text in a mrkdwn object, where Slack would format it ({text:?}); put it in a plain_text object"
            )),
            None => Ok(()),
        };
        for a in samples::approvals() {
            let m = self.request_message(&a, &names)?;
            inert(REQUEST, serde_json::to_value(&m.blocks)?)?;
            let modal = self.deny_modal(&a, "{}".into())?;
            inert(DENY_MODAL, serde_json::to_value(&modal)?)?;
        }
        for (answer, page) in samples::audit_answers() {
            let m = self.audit(&answer, page, "pending", &names)?;
            inert("the /audit answers", serde_json::to_value(&m.blocks)?)?;
        }
        Ok(())
    }
}

/// The text of the first mrkdwn object holding the sample agent text's
/// marker unescaped, if any.
fn live_agent_markup(v: &Value) -> Option<String> {
    match v {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("mrkdwn")
                && let Some(text) = map.get("text").and_then(Value::as_str)
                && text.contains(samples::CANARY)
            {
                return Some(text.to_string());
            }
            map.values().find_map(live_agent_markup)
        }
        Value::Array(list) => list.iter().find_map(live_agent_markup),
        _ => None,
    }
}

/// A request as templates see it. Every agent-supplied value (action,
/// resource, summary, justification, details, principals, comments) is
/// made visible and cut to the shared limits ([`text::cut`]: a cut value
/// says how much is hidden and that `/audit <id>` shows it all), then
/// escaped for a `plain_text` object, which is where the built-in templates
/// put it. `progress` and `outcome` are the only mrkdwn lines (they carry
/// mentions); what they hold of anyone else's text went through
/// [`limits::mrkdwn`].
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

/// The command that shows a request in full, for the notes on cut fields.
pub const FULL_TEXT_COMMAND: &str = "/audit";

impl RequestView {
    pub fn new(a: &Approval, names: &SlackNames) -> Self {
        let id = a.id.to_string();
        let full = text::FullText {
            command: FULL_TEXT_COMMAND,
            request_id: &id,
        };
        // Cut first (on the text as the reader will see it), then escape,
        // so an entity is never cut and the hidden count is in characters
        // the reader would have seen.
        let plain = |s: &str, limit: Limit, multiline: bool| {
            escape(&text::cut(s, limit, multiline, full).0)
        };
        let approvals: Vec<String> = a
            .approvals
            .iter()
            .map(|d| person(&d.principal, names))
            .collect();
        let unit = if a.required_approvals == 1 {
            "approval"
        } else {
            "approvals"
        };
        let mut progress = format!("*{} of {} {unit}*", approvals.len(), a.required_approvals);
        if !approvals.is_empty() {
            progress.push_str(" — ");
            progress.push_str(&approvals.join(", "));
        }
        let details: Vec<Detail> = a
            .details
            .iter()
            .take(text::MAX_DETAILS)
            .map(|(k, v)| Detail {
                key: plain(k, Limit::DetailKey, false),
                value: plain(
                    &match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                    Limit::DetailValue,
                    true,
                ),
            })
            .collect();
        let resource = plain(&a.resource, Limit::Resource, false);
        let action = plain(&a.action, Limit::Action, false);
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
        let outcome_note = match a.status {
            Status::Pending => None,
            Status::Denied => a
                .denial
                .as_ref()
                .and_then(|d| d.comment.as_deref())
                .map(|c| plain(c, Limit::Comment, true))
                .or_else(|| a.reason.as_deref().map(|r| plain(r, Limit::Reason, true))),
            _ => a.reason.as_deref().map(|r| plain(r, Limit::Reason, true)),
        }
        .filter(|n| !n.is_empty());
        Self {
            status: a.status.as_str(),
            status_emoji: status_emoji(a.status),
            pending: a.status == Status::Pending,
            risk: a.risk.as_str(),
            risk_label: a.risk.as_str().to_uppercase(),
            risk_emoji: risk_emoji(a.risk),
            action,
            resource,
            summary: plain(&a.summary, Limit::Summary, true),
            justification: a
                .justification
                .as_deref()
                .filter(|j| !j.trim().is_empty())
                .map(|j| plain(j, Limit::Justification, true)),
            details_omitted: a.details.len().saturating_sub(text::MAX_DETAILS),
            details,
            requester: plain(a.requester.as_str(), Limit::Principal, false),
            on_behalf_of: a
                .on_behalf_of
                .as_ref()
                .map(|p| plain(shown_principal(p.as_str()), Limit::Principal, false)),
            policy_rule: plain(&a.policy.rule, Limit::PolicyRule, false),
            policy_version: escape(&a.policy.version.chars().take(12).collect::<String>()),
            expires: slack_date(&a.expires_at),
            expires_utc: utc(&a.expires_at),
            created: utc(&a.created_at),
            payload_sha256: escape(&a.payload_sha256),
            payload_sha256_short: escape(&a.payload_sha256.chars().take(12).collect::<String>()),
            required_approvals: a.required_approvals,
            confirm: matches!(a.risk, Risk::High | Risk::Critical),
            button_value: ButtonValue {
                request_id: id.clone(),
                payload_sha256: Some(a.payload_sha256.clone()),
            }
            .encode(),
            outcome: outcome(a, &approvals, names),
            outcome_note,
            decided_by: a
                .decided_by
                .as_deref()
                .map(|p| plain(shown_principal(p), Limit::Principal, false)),
            approvals,
            progress,
            fallback,
            id,
        }
    }
}

/// The final banner (mrkdwn): who decided and when. What they said is in
/// `outcome_note`, as plain text.
fn outcome(a: &Approval, approvals: &[String], names: &SlackNames) -> Option<String> {
    let at = a.decided_at.as_deref().map(utc).unwrap_or_default();
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

/// A principal as a person reads it: users by e-mail address.
fn shown_principal(p: &str) -> &str {
    p.strip_prefix("user:").unwrap_or(p)
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

fn risk_emoji(r: Risk) -> &'static str {
    match r {
        Risk::Low => "🟢",
        Risk::Medium => "🟡",
        Risk::High => "🟠",
        Risk::Critical => "🔴",
    }
}

fn status_emoji(s: Status) -> &'static str {
    match s {
        Status::Pending => "⏳",
        Status::Approved => "✅",
        Status::Denied => "⛔",
        Status::Expired => "⌛",
        Status::Cancelled => "🚫",
    }
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A stored time as `2026-01-31 12:00 UTC`.
pub fn utc(s: &str) -> String {
    crate::clock::parse(s)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| escape(s))
}

/// A stored time as a Slack date token, with UTC as the fallback text.
fn slack_date(s: &str) -> String {
    match crate::clock::parse(s) {
        Some(t) => format!(
            "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
            t.timestamp(),
            utc(s)
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
    chunks_into(&mut out, "Summary:\n", &a.summary);
    if let Some(j) = a.justification.as_deref().filter(|j| !j.trim().is_empty()) {
        chunks_into(&mut out, "Justification:\n", j);
    }
    if !a.details.is_empty() {
        let lines: Vec<String> = a
            .details
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{}: {v}", text::visible(k, false))
            })
            .collect();
        chunks_into(&mut out, "Details:\n", &lines.join("\n"));
    }
    out
}

/// Leaves room under Slack's 3,000 for the JSON of a section.
const FULL_CHUNK: usize = 2900;

/// Splits `label` + `s` into escaped pieces that each fit a text object.
fn chunks_into(out: &mut Vec<String>, label: &str, s: &str) {
    let mut piece = label.to_string();
    let mut len = piece.chars().count();
    for c in text::visible(s, true).chars() {
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

/// One audit event as a line of an answer.
#[derive(Debug, Serialize)]
struct EventLine {
    ts: String,
    kind: String,
    actor: String,
    request_id: Option<String>,
    action: Option<String>,
    detail: String,
}

/// Where the rest of a cut event line is: the request's timeline, or
/// the export for events that belong to no request.
fn full_event(e: &AuditEventView) -> text::FullText<'_> {
    match e.request_id.as_deref() {
        Some(id) => text::FullText {
            command: FULL_TEXT_COMMAND,
            request_id: id,
        },
        None => text::FullText {
            command: "countersign audit",
            request_id: "export",
        },
    }
}

impl EventLine {
    fn new(e: &AuditEventView) -> Self {
        let s = |k: &str| e.data.get(k).and_then(Value::as_str);
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
        Self {
            ts: e.ts.get(..19).unwrap_or(&e.ts).replace('T', " "),
            kind: mrkdwn(&e.kind),
            actor: mrkdwn(&e.actor),
            request_id: e.request_id.as_deref().map(mrkdwn),
            action: e.action.as_deref().map(mrkdwn),
            detail: mrkdwn(&text::cut_to(&parts.join(" · "), 600, false, full_event(e)).0),
        }
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

/// Sample data for checking templates at start and in tests.
pub mod samples {
    use super::*;
    use crate::domain::Principal;
    use crate::store::requests::{DecisionView, PolicyRef};

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
        let verify = |ok: bool| VerifyResult {
            ok,
            events: 10,
            signatures: 3,
            head_seq: 10,
            head_hash: "ab".repeat(32),
            first_bad_seq: (!ok).then_some(4),
            reason: (!ok).then(|| "hash mismatch <!channel>".into()),
            public_key: "cd".repeat(32),
            mismatches: vec![],
            checkpoint: None,
            checkpoint_sink: None,
        };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Templates {
        Templates::load(None).expect("built-in templates load")
    }

    /// Serializes blocks back to JSON to look at them as Slack would.
    fn json_of(blocks: &[SlackBlock]) -> String {
        serde_json::to_string(blocks).unwrap()
    }

    #[test]
    fn every_template_renders_block_kit_that_slack_morphism_parses() {
        let t = templates();
        let names = SlackNames::new();
        for a in samples::approvals() {
            let m = t.request_message(&a, &names).unwrap();
            let blocks = m.blocks.unwrap();
            assert!(blocks.len() <= limits::MAX_BLOCKS);
            // Round trip: what we send parses as Block Kit again.
            let back: Vec<SlackBlock> = serde_json::from_str(&json_of(&blocks)).unwrap();
            assert_eq!(back, blocks);
            let view = t.deny_modal(&a, "{}".into()).unwrap();
            serde_json::from_value::<SlackView>(serde_json::to_value(&view).unwrap()).unwrap();
        }
        for (answer, page) in samples::audit_answers() {
            let m = t.audit(&answer, page, "pending", &names).unwrap();
            let blocks = m.blocks.unwrap();
            assert!(!blocks.is_empty() && blocks.len() <= limits::MAX_BLOCKS);
        }
    }

    #[test]
    fn agent_text_arrives_escaped_and_within_limits() {
        let t = templates();
        let m = t
            .request_message(&samples::hostile(), &SlackNames::new())
            .unwrap();
        let json = json_of(m.blocks.as_ref().unwrap());
        for raw in ["<!channel>", "<@U123>", "<https://evil|click>"] {
            assert!(!json.contains(raw), "{raw} must not reach Slack unescaped");
        }
        assert!(json.contains("&lt;!channel&gt;"));
        assert!(!m.text.unwrap().contains('<'));
        let value: Value = serde_json::from_str(&json).unwrap();
        fn walk(v: &Value, key: &str) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        if let Value::String(s) = v {
                            let max = match k.as_str() {
                                "text" => limits::MAX_TEXT,
                                "value" => limits::MAX_VALUE,
                                "action_id" | "block_id" => limits::MAX_ACTION_ID,
                                _ => usize::MAX,
                            };
                            assert!(s.chars().count() <= max, "{key}.{k} too long");
                        }
                        walk(v, k);
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, key)),
                _ => {}
            }
        }
        walk(&value, "");
    }

    #[test]
    fn a_pending_request_has_approve_with_a_confirm_for_high_risk_and_deny() {
        let t = templates();
        let a = samples::hostile();
        let m = t.request_message(&a, &SlackNames::new()).unwrap();
        let v: Value = serde_json::to_value(m.blocks.unwrap()).unwrap();
        let actions = v
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .expect("buttons");
        let approve = &actions["elements"][0];
        let deny = &actions["elements"][1];
        assert_eq!(approve["action_id"], APPROVE);
        assert_eq!(approve["style"], "primary");
        assert!(approve.get("confirm").is_some(), "critical risk asks first");
        assert_eq!(deny["action_id"], DENY);
        assert_eq!(deny["style"], "danger");
        let bound = ButtonValue::decode(approve["value"].as_str().unwrap()).unwrap();
        assert_eq!(bound.request_id, a.id.to_string());
        assert_eq!(
            bound.payload_sha256.as_deref(),
            Some(a.payload_sha256.as_str())
        );

        let mut low = a.clone();
        low.risk = Risk::Low;
        let m = t.request_message(&low, &SlackNames::new()).unwrap();
        let v = serde_json::to_string(&m.blocks.unwrap()).unwrap();
        assert!(!v.contains("\"confirm\""), "low risk needs no confirm");
    }

    #[test]
    fn a_final_request_has_a_banner_and_no_buttons() {
        let t = templates();
        let mut names = SlackNames::new();
        names.insert("user:carol@example.com".into(), "UCAROL".into());
        for a in samples::approvals()
            .into_iter()
            .filter(|a| a.status.is_final())
        {
            let m = t.request_message(&a, &names).unwrap();
            let v = serde_json::to_string(&m.blocks.unwrap()).unwrap();
            assert!(!v.contains(APPROVE), "{}: buttons removed", a.status);
            if a.status == Status::Approved {
                assert!(v.contains("<@UCAROL>"), "approvers are mentioned: {v}");
                assert!(v.contains("bob@example.com"), "unknown accounts by e-mail");
            }
        }
    }

    #[test]
    fn quorum_progress_names_who_approved() {
        let mut names = SlackNames::new();
        names.insert("user:bob@example.com".into(), "UBOB".into());
        let partial = &samples::approvals()[1];
        let r = RequestView::new(partial, &names);
        assert_eq!(r.progress, "*1 of 2 approvals* — <@UBOB>");
    }

    #[test]
    fn a_broken_override_stops_the_service_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("slack")).unwrap();
        std::fs::write(
            dir.path().join("slack").join(REQUEST),
            "[{\"type\": \"nope\"}]",
        )
        .unwrap();
        assert!(Templates::load(Some(dir.path())).is_err());
        // Agent text in a mrkdwn object would format: refused at start.
        std::fs::write(
            dir.path().join("slack").join(REQUEST),
            "[{\"type\": \"section\", \"text\": {\"type\": \"mrkdwn\", \"text\": {{ r.summary }}}}]",
        )
        .unwrap();
        let err = Templates::load(Some(dir.path())).err().unwrap();
        assert!(format!("{err:#}").contains("plain_text"), "{err:#}");
        std::fs::write(
            dir.path().join("slack").join(REQUEST),
            "[{\"type\": \"section\", \"text\": {\"type\": \"plain_text\", \"text\": {{ r.summary }}}}]",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let m = t
            .request_message(&samples::hostile(), &SlackNames::new())
            .unwrap();
        assert_eq!(m.blocks.unwrap().len(), 1, "the override is used");
    }
}
