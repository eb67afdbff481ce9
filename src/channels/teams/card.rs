//! Adaptive Cards (schema 1.5) for Teams: the approval card, the answer to
//! `audit …`, and short notices.
//!
//! The JSON comes from minijinja templates in `templates/teams/`, compiled
//! in and overridable from `<templates_dir>/teams/`. This module prepares
//! every value the templates see, once, so no template (built in or an
//! operator's override) can show agent text unprepared, and the templates'
//! JSON auto-escaping keeps each value inside its string:
//!
//! - agent text (and anyone's but ours) goes into `TextRun`s of a
//!   `RichTextBlock`, which Adaptive Cards render as plain text ("Markdown
//!   is not supported" in a TextRun, per the 1.2+ schema), after its
//!   invisible characters are spelled out and it is cut to the limits
//!   shared with Slack, a cut field saying how much is hidden and that
//!   `audit <id>` shows it all ([`text::cut`]);
//! - text in a `TextBlock` or a `FactSet` (which Teams renders as
//!   markdown) is ours, or goes through [`escape`], which backslash-escapes
//!   every markdown and mention character.
//!
//! Every template is rendered with sample data and checked against the 1.5
//! element list at start, and for sample agent text left where Teams
//! renders markdown, so a broken override stops the service before it posts
//! anything.

use std::path::Path;

use anyhow::Context;
use minijinja::Environment;
use serde_json::{Value, json};

use crate::channels::text::{self, FullText, Limit};
use crate::clock;
use crate::domain::{Risk, Status};
use crate::service::audit_query::AuditAnswer;
use crate::store::requests::Approval;
use crate::store::trail::AuditEventView;

const BUILT_IN: [(&str, &str); 3] = [
    (
        "request.json",
        include_str!("../../../templates/teams/request.json"),
    ),
    (
        "audit.json",
        include_str!("../../../templates/teams/audit.json"),
    ),
    (
        "notice.json",
        include_str!("../../../templates/teams/notice.json"),
    ),
];

/// The content type of a card attachment and of an invoke response's card.
pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// Longest texts of our own making (notices, titles) on a card. Agent
/// text is cut to the limits shared with Slack ([`text::Limit`]).
const MAX_SHORT: usize = 200;
const MAX_NOTICE: usize = 1000;
const MAX_DETAILS: usize = text::MAX_DETAILS;
const MAX_COMMENT: usize = Limit::Comment.chars();

/// Where the rest of a cut text is when it belongs to no request.
const NO_REQUEST: FullText<'static> = FullText {
    command: "countersign audit",
    request_id: "export",
};

/// What a note on a cut field tells the reader to send the bot.
pub const FULL_TEXT_COMMAND: &str = "audit";

/// How a notice at the top of a card looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Warning,
    Attention,
}

impl Tone {
    fn style(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Warning => "warning",
            Tone::Attention => "attention",
        }
    }
}

/// A line for the person who clicked, above the request.
#[derive(Debug, Clone)]
pub struct Notice {
    pub text: String,
    pub tone: Tone,
}

impl Notice {
    pub fn new(tone: Tone, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            tone,
        }
    }
}

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles the templates, preferring `<dir>/teams/<name>` where it
    /// exists, and checks each one renders a valid 1.5 card.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        for (name, built_in) in BUILT_IN {
            let path = dir.map(|d| d.join("teams").join(name));
            let source = match path.filter(|p| p.exists()) {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read Teams template {}", p.display()))?,
                None => built_in.to_string(),
            };
            env.add_template_owned(name, source)
                .with_context(|| format!("Teams template {name} does not compile"))?;
        }
        let templates = Self { env };
        for (name, ctx) in samples() {
            let card = templates
                .render(name, &ctx)
                .with_context(|| format!("Teams template {name}"))?;
            check_adaptive_card(&card)
                .map_err(|e| anyhow::anyhow!("Teams template {name} is not a valid card: {e}"))?;
            // The samples' agent text carries CANARY, live markdown: found
            // as itself in a TextBlock or a fact, a template put agent text
            // where Teams formats it.
            if let Some(text) = live_agent_markdown(&card) {
                anyhow::bail!(
                    "Teams template {name} puts agent text in a TextBlock or FactSet, where Teams renders markdown ({text:?}); put it in a TextRun"
                );
            }
        }
        Ok(templates)
    }

    /// Renders one template and parses its JSON.
    pub fn render(&self, name: &str, ctx: &Value) -> anyhow::Result<Value> {
        let text = self
            .env
            .get_template(name)?
            .render(to_template_value(ctx))?;
        serde_json::from_str(&text).with_context(|| format!("{name} did not render to JSON"))
    }

    /// The approval card for a request's current state.
    pub fn request_card(&self, a: &Approval, notice: Option<&Notice>) -> anyhow::Result<Value> {
        self.render("request.json", &request_context(a, notice))
    }

    pub fn notice_card(&self, tone: Tone, title: &str, text: &str) -> anyhow::Result<Value> {
        self.render(
            "notice.json",
            &json!({
                "style": tone.style(),
                "title": text::cut_to(title, MAX_SHORT, false, NO_REQUEST).0,
                "text": text::cut_to(text, MAX_NOTICE, true, NO_REQUEST).0,
            }),
        )
    }

    /// The answer to `audit …`; `command` is what was asked, for the
    /// next-page hint.
    pub fn audit_card(&self, answer: &AuditAnswer, command: &str) -> anyhow::Result<Value> {
        self.render("audit.json", &audit_context(answer, command))
    }
}

/// The context as minijinja sees it (without needing minijinja's serde
/// feature).
fn to_template_value(v: &Value) -> minijinja::Value {
    use minijinja::Value as J;
    match v {
        Value::Null => J::from(()),
        Value::Bool(b) => J::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => J::from(i),
            (None, Some(u)) => J::from(u),
            _ => J::from(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => J::from(s.as_str()),
        Value::Array(items) => J::from(items.iter().map(to_template_value).collect::<Vec<_>>()),
        Value::Object(map) => J::from_pairs(
            map.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_template_value(v))),
        ),
    }
}

/// Escapes text for an Adaptive Card's markdown (a `TextBlock` or a
/// `FactSet`) and cuts it to `max` characters. Markdown and mention syntax
/// is backslash-escaped so the text cannot make a link, a mention, emphasis
/// or a heading; line breaks become ` ⏎ `, so it cannot start a list or a
/// quote either, and invisible or direction-changing characters are spelled
/// out (`[U+202E]`) so they cannot reorder or hide what is shown. Prefer a
/// `TextRun` ([`plain`]) for agent text.
pub fn escape(s: &str, max: usize) -> String {
    let mut cleaned = text::visible(s.trim(), false);
    if cleaned.chars().count() > max {
        cleaned = cleaned.chars().take(max.saturating_sub(1)).collect();
        cleaned.push('…');
    }
    let mut out = String::with_capacity(cleaned.len() + 8);
    for (i, c) in cleaned.chars().enumerate() {
        let special = matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '<'
                | '>'
                | '#'
                | '|'
                | '~'
                | '!'
                | '&'
        ) || (i == 0 && matches!(c, '-' | '+' | '='));
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Agent text for a `TextRun`: visible, cut to its shared limit with a
/// note on what is hidden. Nothing else is needed: a TextRun is plain text.
pub fn plain(s: &str, limit: Limit, multiline: bool, full: FullText<'_>) -> String {
    text::cut(s, limit, multiline, full).0
}

/// A request's principal as a person reads it (users by e-mail), for a
/// TextRun.
fn person(principal: &str) -> String {
    text::visible(principal.strip_prefix("user:").unwrap_or(principal), false)
}

fn when(ts: &str) -> String {
    clock::parse(ts)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ts.to_string())
}

fn status_line(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Pending => ("⏳ Approval needed", "emphasis"),
        Status::Approved => ("✅ Approved", "good"),
        Status::Denied => ("⛔ Denied", "attention"),
        Status::Expired => ("⌛ Expired", "warning"),
        Status::Cancelled => ("🚫 Cancelled", "warning"),
    }
}

fn risk_label(risk: Risk) -> &'static str {
    match risk {
        Risk::Low => "🟢 low",
        Risk::Medium => "🟡 medium",
        Risk::High => "🟠 high",
        Risk::Critical => "🔴 critical",
    }
}

fn detail_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One labelled line of a card: the label bold, the value a plain TextRun.
fn line(label: &str, value: impl Into<String>) -> Value {
    json!({ "label": label, "value": value.into() })
}

fn request_context(a: &Approval, notice: Option<&Notice>) -> Value {
    let (status_line, style) = status_line(a.status);
    let id = a.id.to_string();
    let full = FullText {
        command: FULL_TEXT_COMMAND,
        request_id: &id,
    };
    let one_line = |s: &str, limit: Limit| plain(s, limit, false, full);
    let details: Vec<Value> = a
        .details
        .iter()
        .take(MAX_DETAILS)
        .map(|(k, v)| {
            json!({
                "label": format!("{}: ", one_line(k, Limit::DetailKey)),
                "value": plain(&detail_value(v), Limit::DetailValue, true, full),
            })
        })
        .chain((a.details.len() > MAX_DETAILS).then(|| {
            json!({
                "label": "…",
                "value": format!(
                    " {} more not shown: {FULL_TEXT_COMMAND} {id} shows all",
                    a.details.len() - MAX_DETAILS
                ),
            })
        }))
        .collect();
    let approvals: Vec<String> = a
        .approvals
        .iter()
        .map(|d| {
            let mut s = format!("✔ {} at {}", person(&d.principal), when(&d.at));
            if let Some(c) = d.comment.as_deref().filter(|c| !c.trim().is_empty()) {
                s.push_str(&format!(": {}", plain(c, Limit::Comment, false, full)));
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
    // The outcome as a bold head and a plain rest (a person's comment).
    let outcome = match (&a.denial, a.status) {
        (Some(d), Status::Denied) => Some(json!({
            "head": format!("Denied by {}", person(&d.principal)),
            "rest": format!(
                " at {}. Reason: {}",
                when(&d.at),
                plain(d.comment.as_deref().unwrap_or(""), Limit::Comment, true, full)
            ),
        })),
        (_, Status::Pending) => None,
        _ => Some(json!({
            "head": "",
            "rest": format!(
                "{}{}",
                plain(a.reason.as_deref().unwrap_or(""), Limit::Reason, true, full),
                a.decided_at
                    .as_deref()
                    .map(|t| format!(" ({})", when(t)))
                    .unwrap_or_default()
            ),
        })),
    };
    let approvers = (!a.approvers.is_empty() && a.status == Status::Pending).then(|| {
        let names: Vec<String> = a
            .approvers
            .iter()
            .take(10)
            .map(|p| person(p.as_str()))
            .collect();
        let more = a.approvers.len().saturating_sub(10);
        format!(
            "Who may decide: {}{}",
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    });
    let action = one_line(&a.action, Limit::Action);
    let resource = one_line(&a.resource, Limit::Resource);
    let mut facts = vec![
        line("Risk: ", risk_label(a.risk)),
        line("Action: ", action.clone()),
        line("Resource: ", resource.clone()),
        line(
            "Requester: ",
            one_line(&person(a.requester.as_str()), Limit::Principal),
        ),
    ];
    if let Some(p) = &a.on_behalf_of {
        facts.push(line(
            "On behalf of: ",
            one_line(&person(p.as_str()), Limit::Principal),
        ));
    }
    facts.push(line(
        "Policy rule: ",
        one_line(&a.policy.rule, Limit::PolicyRule),
    ));
    facts.push(line("Expires: ", when(&a.expires_at)));
    facts.push(line("Request id: ", id.clone()));
    json!({
        "id": id,
        "final": a.status.is_final(),
        "status": a.status.as_str(),
        "status_line": status_line,
        "status_style": style,
        "notice": notice.map(|n| text::cut_to(&n.text, MAX_NOTICE, false, full).0),
        "notice_style": notice.map(|n| n.tone.style()).unwrap_or("default"),
        "heading": {
            "who": one_line(&person(a.requester.as_str()), Limit::Principal),
            "action": action,
            "resource": resource,
        },
        "summary": plain(&a.summary, Limit::Summary, true, full),
        "facts": facts,
        "justification": a.justification.as_deref().filter(|j| !j.trim().is_empty()).map(|j| plain(j, Limit::Justification, true, full)),
        "details": details,
        "progress": progress,
        "approvals": approvals,
        "outcome": outcome,
        "approvers": approvers,
        "payload_sha256": a.payload_sha256,
        "payload_line": format!("Payload SHA-256 {}", escape(&a.payload_sha256, 64)),
    })
}

fn fact(title: &str, value: impl AsRef<str>) -> Value {
    json!({ "title": title, "value": escape(value.as_ref(), MAX_SHORT) })
}

/// A few words from an event's data worth showing in a timeline, for a
/// TextRun.
fn event_detail(e: &AuditEventView) -> String {
    let d = &e.data;
    let pick = |k: &str| d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let text = if e.kind == "decision.blocked" {
        pick("message")
    } else if e.kind.starts_with("decision.") {
        pick("comment")
    } else if e.kind.starts_with("request.") && e.kind != "request.created" {
        pick("reason")
    } else if e.kind == "request.created" {
        pick("summary")
    } else {
        None
    };
    let channel = pick("channel")
        .map(|c| format!(" via {}", text::cut_to(c, 20, false, NO_REQUEST).0))
        .unwrap_or_default();
    let full = match e.request_id.as_deref() {
        Some(id) => FullText {
            command: FULL_TEXT_COMMAND,
            request_id: id,
        },
        None => NO_REQUEST,
    };
    match text {
        Some(t) => format!("{channel}: {}", text::cut_to(t, MAX_COMMENT, false, full).0),
        None => channel,
    }
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

/// A request's agent-supplied text in full, for `audit <id>`: what the
/// notes on cut fields promise it shows.
fn full_payload(a: &Approval) -> Vec<Value> {
    let mut out = vec![line("Summary", text::visible(&a.summary, true))];
    if let Some(j) = a.justification.as_deref().filter(|j| !j.trim().is_empty()) {
        out.push(line("Justification", text::visible(j, true)));
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
        out.push(line("Details", lines.join("\n")));
    }
    out
}

fn audit_context(answer: &AuditAnswer, command: &str) -> Value {
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
                    let id = a.id.to_string();
                    let full = FullText {
                        command: FULL_TEXT_COMMAND,
                        request_id: &id,
                    };
                    json!({
                        "head": format!(
                            "{} · {} · {}",
                            status_line(a.status).0,
                            short(&a.action, Limit::Action.chars(), full),
                            short(&a.resource, Limit::Resource.chars(), full)
                        ),
                        "body": format!(
                            "{} (by {}, {}, id {id})",
                            short(&a.summary, MAX_SHORT, full),
                            short(&person(a.requester.as_str()), Limit::Principal.chars(), full),
                            when(&a.created_at),
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
            let id = a.id.to_string();
            let full = FullText {
                command: FULL_TEXT_COMMAND,
                request_id: &id,
            };
            let one = |s: &str, limit: Limit| plain(s, limit, false, full);
            let mut lines = vec![
                line("Status: ", a.status.as_str()),
                line("Action: ", one(&a.action, Limit::Action)),
                line("Resource: ", one(&a.resource, Limit::Resource)),
                line(
                    "Requester: ",
                    one(&person(a.requester.as_str()), Limit::Principal),
                ),
            ];
            if let Some(p) = &a.on_behalf_of {
                lines.push(line(
                    "On behalf of: ",
                    one(&person(p.as_str()), Limit::Principal),
                ));
            }
            lines.push(line(
                "Policy rule: ",
                one(&a.policy.rule, Limit::PolicyRule),
            ));
            lines.push(line("Payload SHA-256: ", a.payload_sha256.clone()));
            let rows: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "head": format!("{} · {}", when(&e.ts), short(&e.kind, MAX_SHORT, full)),
                        "body": format!(
                            "#{} {}{}",
                            e.seq,
                            short(&person(&e.actor), MAX_SHORT, full),
                            event_detail(e)
                        ),
                    })
                })
                .collect();
            json!({
                "kind": "timeline",
                "title": format!("Timeline of {}", a.id),
                "lines": lines,
                "payload": full_payload(a),
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
            let rows: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "head": format!("{} · {}", when(&e.ts), short(&e.kind, MAX_SHORT, NO_REQUEST)),
                        "body": format!(
                            "{} {}{}",
                            short(e.action.as_deref().unwrap_or(""), MAX_SHORT, NO_REQUEST),
                            e.request_id.as_deref().unwrap_or(""),
                            event_detail(e)
                        ),
                    })
                })
                .collect();
            json!({
                "kind": "person",
                "title": format!(
                    "What {} requested and decided",
                    short(&person(principal.as_str()), MAX_SHORT, NO_REQUEST)
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

/// Live markdown in every sample agent text (see `Templates::load`).
pub const CANARY: &str = "**canary**";

/// The first TextBlock text or fact holding [`CANARY`] as itself.
fn live_agent_markdown(v: &Value) -> Option<String> {
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
    use crate::domain::Principal;
    use crate::store::requests::{DecisionView, PolicyRef};
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
    let verify = |ok: bool| crate::service::audit_query::VerifyResult {
        ok,
        events: 3,
        signatures: 1,
        head_seq: 3,
        head_hash: "b".repeat(64),
        first_bad_seq: (!ok).then_some(2),
        reason: (!ok).then(|| "hash mismatch".into()),
        public_key: "c".repeat(64),
        mismatches: vec![],
        checkpoint: None,
        checkpoint_sink: None,
    };
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

/// Element types of Adaptive Cards 1.5 (what may stand in `body`, `items`).
const ELEMENTS: &[&str] = &[
    "TextBlock",
    "Image",
    "Media",
    "RichTextBlock",
    "ActionSet",
    "Container",
    "ColumnSet",
    "FactSet",
    "ImageSet",
    "Table",
    "Input.Text",
    "Input.Number",
    "Input.Date",
    "Input.Time",
    "Input.Toggle",
    "Input.ChoiceSet",
];

/// Action types of Adaptive Cards 1.5.
const ACTIONS: &[&str] = &[
    "Action.Execute",
    "Action.OpenUrl",
    "Action.ShowCard",
    "Action.Submit",
    "Action.ToggleVisibility",
];

/// Checks that `card` is an Adaptive Card of version 1.5 or lower made
/// only of 1.5 elements and actions, with the properties each needs.
pub fn check_adaptive_card(card: &Value) -> Result<(), String> {
    let version = card
        .get("version")
        .and_then(Value::as_str)
        .ok_or("the card has no version")?;
    let ok_version = match version.split_once('.') {
        Some((major, minor)) => major == "1" && minor.parse::<u32>().is_ok_and(|m| m <= 5),
        None => false,
    };
    if !ok_version {
        return Err(format!("version {version} is not 1.5 or lower"));
    }
    check_card(card, "card")
}

fn type_of<'a>(v: &'a Value, at: &str) -> Result<&'a str, String> {
    v.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at} has no type"))
}

fn check_card(card: &Value, at: &str) -> Result<(), String> {
    if type_of(card, at)? != "AdaptiveCard" {
        return Err(format!("{at} is not an AdaptiveCard"));
    }
    if let Some(body) = card.get("body") {
        check_elements(body, &format!("{at}.body"))?;
    }
    if let Some(actions) = card.get("actions") {
        check_actions(actions, &format!("{at}.actions"))?;
    }
    if let Some(a) = card.get("selectAction") {
        check_action(a, &format!("{at}.selectAction"))?;
    }
    if let Some(a) = card.get("refresh").and_then(|r| r.get("action")) {
        check_action(a, &format!("{at}.refresh.action"))?;
    }
    Ok(())
}

fn check_elements(list: &Value, at: &str) -> Result<(), String> {
    let list = list
        .as_array()
        .ok_or_else(|| format!("{at} is not a list"))?;
    for (i, e) in list.iter().enumerate() {
        check_element(e, &format!("{at}[{i}]"))?;
    }
    Ok(())
}

fn check_actions(list: &Value, at: &str) -> Result<(), String> {
    let list = list
        .as_array()
        .ok_or_else(|| format!("{at} is not a list"))?;
    for (i, a) in list.iter().enumerate() {
        check_action(a, &format!("{at}[{i}]"))?;
    }
    Ok(())
}

fn need_str(v: &Value, key: &str, at: &str) -> Result<(), String> {
    match v.get(key) {
        Some(Value::String(_)) => Ok(()),
        _ => Err(format!("{at} needs a string {key}")),
    }
}

fn check_element(e: &Value, at: &str) -> Result<(), String> {
    let t = type_of(e, at)?;
    if !ELEMENTS.contains(&t) {
        return Err(format!(
            "{at} is a {t}, which is not an Adaptive Card 1.5 element"
        ));
    }
    let at = &format!("{at} ({t})");
    match t {
        "TextBlock" => need_str(e, "text", at)?,
        "Image" => need_str(e, "url", at)?,
        "Container" => check_elements(
            e.get("items").unwrap_or(&Value::Null),
            &format!("{at}.items"),
        )?,
        "ActionSet" => check_actions(
            e.get("actions").unwrap_or(&Value::Null),
            &format!("{at}.actions"),
        )?,
        "ColumnSet" => {
            for (i, c) in e
                .get("columns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let cat = format!("{at}.columns[{i}]");
                if type_of(c, &cat).unwrap_or("Column") != "Column" {
                    return Err(format!("{cat} is not a Column"));
                }
                if let Some(items) = c.get("items") {
                    check_elements(items, &format!("{cat}.items"))?;
                }
            }
        }
        "FactSet" => {
            let facts = e
                .get("facts")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("{at} needs facts"))?;
            for (i, f) in facts.iter().enumerate() {
                need_str(f, "title", &format!("{at}.facts[{i}]"))?;
                need_str(f, "value", &format!("{at}.facts[{i}]"))?;
            }
        }
        "RichTextBlock" => {
            for (i, r) in e
                .get("inlines")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if !r.is_string() && type_of(r, at)? != "TextRun" {
                    return Err(format!("{at}.inlines[{i}] is not a TextRun"));
                }
            }
        }
        "Table" => {
            for row in e
                .get("rows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if type_of(row, at)? != "TableRow" {
                    return Err(format!("{at} has a row that is not a TableRow"));
                }
                for cell in row
                    .get("cells")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if type_of(cell, at)? != "TableCell" {
                        return Err(format!("{at} has a cell that is not a TableCell"));
                    }
                    check_elements(
                        cell.get("items").unwrap_or(&Value::Null),
                        &format!("{at}.cell"),
                    )?;
                }
            }
        }
        t if t.starts_with("Input.") => need_str(e, "id", at)?,
        _ => {}
    }
    if let Some(a) = e.get("selectAction") {
        if type_of(a, at)? == "Action.ShowCard" {
            return Err(format!("{at}.selectAction may not be Action.ShowCard"));
        }
        check_action(a, &format!("{at}.selectAction"))?;
    }
    Ok(())
}

fn check_action(a: &Value, at: &str) -> Result<(), String> {
    let t = type_of(a, at)?;
    if !ACTIONS.contains(&t) {
        return Err(format!(
            "{at} is a {t}, which is not an Adaptive Card 1.5 action"
        ));
    }
    match t {
        "Action.Execute" => need_str(a, "verb", at)?,
        "Action.OpenUrl" => need_str(a, "url", at)?,
        "Action.ShowCard" => check_card(
            a.get("card").ok_or_else(|| format!("{at} needs a card"))?,
            &format!("{at}.card"),
        )?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_template_renders_a_valid_1_5_card_in_every_branch() {
        let t = Templates::load(None).unwrap();
        for (name, ctx) in samples() {
            let card = t.render(name, &ctx).unwrap();
            check_adaptive_card(&card).unwrap_or_else(|e| panic!("{name}: {e}\n{card:#}"));
        }
    }

    #[test]
    fn a_pending_card_has_approve_and_deny_with_a_required_reason_and_a_final_one_has_none() {
        let t = Templates::load(None).unwrap();
        let samples = samples();
        let pending = t.render("request.json", &samples[0].1).unwrap();
        let actions = pending["actions"].as_array().unwrap();
        assert_eq!(actions[0]["verb"], "approve");
        assert_eq!(actions[1]["type"], "Action.ShowCard");
        let inner = &actions[1]["card"];
        assert_eq!(inner["body"][0]["isRequired"], true);
        assert_eq!(inner["actions"][0]["verb"], "deny");
        let denied = t.render("request.json", &samples[3].1).unwrap();
        assert!(denied.get("actions").is_none());
    }

    #[test]
    fn agent_text_cannot_make_links_mentions_or_emphasis() {
        let e = escape("[click](https://x) <at>all</at> **b** _i_ `c` # h", 500);
        let chars: Vec<char> = e.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if "[]()<>*_`#".contains(*c) {
                assert_eq!(chars[i - 1], '\\', "{c} at {i} is not escaped in {e}");
            }
        }
        assert!(e.contains("\\[click\\]\\(https://x\\)"));
        assert!(e.contains("\\<at\\>"));
        // A line break is shown, not obeyed; a format character is spelled
        // out, not silently dropped.
        assert_eq!(escape("line\n- item", 100), "line ⏎ - item");
        assert_eq!(escape("- item", 100), "\\- item");
        assert_eq!(escape("a\u{202E}b", 100), "a\\[U+202E\\]b");
    }

    #[test]
    fn long_agent_text_is_truncated_with_an_ellipsis() {
        let e = escape(&"x".repeat(1000), 10);
        assert_eq!(e.chars().count(), 10);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn the_validator_refuses_elements_and_actions_outside_1_5() {
        let bad_element =
            json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "Carousel"}]});
        assert!(check_adaptive_card(&bad_element).is_err());
        let bad_action =
            json!({"type": "AdaptiveCard", "version": "1.5", "actions": [{"type": "Action.Http"}]});
        assert!(check_adaptive_card(&bad_action).is_err());
        let nested = json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "Container", "items": [{"type": "Icon"}]}]});
        assert!(check_adaptive_card(&nested).is_err());
        let newer = json!({"type": "AdaptiveCard", "version": "1.6", "body": []});
        assert!(check_adaptive_card(&newer).is_err());
        let ok = json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "hi"}]});
        assert!(check_adaptive_card(&ok).is_ok());
    }

    #[test]
    fn an_override_that_is_not_a_valid_card_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("teams")).unwrap();
        std::fs::write(
            dir.path().join("teams/notice.json"),
            r#"{"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "Carousel"}]}"#,
        )
        .unwrap();
        let err = Templates::load(Some(dir.path())).err().unwrap();
        assert!(format!("{err:#}").contains("Carousel"), "{err:#}");
        // Text that is not ours goes to TextRuns now: an override that puts
        // it in a (markdown) TextBlock is refused at start, not rendered.
        std::fs::write(
            dir.path().join("teams/notice.json"),
            r#"{"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": {{ text }}}]}"#,
        )
        .unwrap();
        let err = Templates::load(Some(dir.path())).err().unwrap();
        assert!(format!("{err:#}").contains("TextRun"), "{err:#}");
        std::fs::write(
            dir.path().join("teams/notice.json"),
            r#"{"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": {{ title }}}]}]}"#,
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let card = t.notice_card(Tone::Good, "Hello *you*", "x").unwrap();
        assert_eq!(card["body"][0]["inlines"][0]["text"], "Hello *you*");
    }
}
