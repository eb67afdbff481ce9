//! Adaptive Cards (schema 1.5) for Teams: the approval card, the answer to
//! `audit …`, and short notices.
//!
//! The JSON comes from minijinja templates in `templates/teams/`, loaded by
//! the kit's loader (compiled in, overridable from `<templates_dir>/teams/`).
//! [`request`] and [`audit`] prepare every value the templates see from the
//! kit's views, once, so no template (built in or an operator's override)
//! can show agent text unprepared, and the templates' JSON auto-escaping
//! keeps each value inside its string:
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
//! Every template is rendered with [`samples`] and checked against the 1.5
//! element list ([`validate`]) at start, and for sample agent text left
//! where Teams renders markdown, so a broken override stops the service
//! before it posts anything.

pub mod audit;
pub mod escape;
pub mod request;
pub mod samples;
pub mod validate;

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::channels::kit::event::NO_REQUEST;
use crate::channels::kit::templates::TemplateSet;
use crate::channels::text;
use crate::service::audit_query::AuditAnswer;
use crate::store::requests::Approval;
pub use escape::{escape, plain};
pub use samples::{CANARY, samples};
pub use validate::check_adaptive_card;

const BUILT_IN: &[(&str, &str)] = &[
    (
        "request.json",
        include_str!("../../../../templates/teams/request.json"),
    ),
    (
        "audit.json",
        include_str!("../../../../templates/teams/audit.json"),
    ),
    (
        "notice.json",
        include_str!("../../../../templates/teams/notice.json"),
    ),
];

/// The content type of a card attachment and of an invoke response's card.
pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// Longest texts of our own making (notices, titles) on a card. Agent
/// text is cut to the limits shared with Slack ([`text::Limit`]).
const MAX_SHORT: usize = 200;
const MAX_NOTICE: usize = 1000;

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
    set: TemplateSet,
}

impl Templates {
    /// Compiles the templates, preferring `<dir>/teams/<name>` where it
    /// exists, and checks each one renders a valid 1.5 card.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let templates = Self {
            set: TemplateSet::load("teams", BUILT_IN, dir)?,
        };
        for (name, ctx) in samples() {
            let card = templates
                .render(name, &ctx)
                .with_context(|| format!("Teams template {name}"))?;
            check_adaptive_card(&card)
                .map_err(|e| anyhow::anyhow!("Teams template {name} is not a valid card: {e}"))?;
            // The samples' agent text carries CANARY, live markdown: found
            // as itself in a TextBlock or a fact, a template put agent text
            // where Teams formats it.
            if let Some(text) = samples::live_agent_markdown(&card) {
                anyhow::bail!(
                    "Teams template {name} puts agent text in a TextBlock or FactSet, where Teams renders markdown ({text:?}); put it in a TextRun"
                );
            }
        }
        Ok(templates)
    }

    /// Renders one template and parses its JSON.
    pub fn render(&self, name: &str, ctx: &Value) -> anyhow::Result<Value> {
        self.set.render(name, ctx)
    }

    /// The approval card for a request's current state.
    pub fn request_card(&self, a: &Approval, notice: Option<&Notice>) -> anyhow::Result<Value> {
        self.request_card_with(a, notice, &Default::default())
    }

    /// [`request_card`](Self::request_card) with the console's link and step-up note.
    pub fn request_card_with(
        &self,
        a: &Approval,
        notice: Option<&Notice>,
        console: &crate::channels::kit::console_link::ConsoleLink,
    ) -> anyhow::Result<Value> {
        let mut ctx = request::request_context(a, notice);
        ctx["console"] = serde_json::json!(console);
        self.render("request.json", &ctx)
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
        self.render("audit.json", &audit::audit_context(answer, command))
    }
}

/// One labelled line of a card: the label bold, the value a plain TextRun.
fn line(label: &str, value: impl Into<String>) -> Value {
    json!({ "label": label, "value": value.into() })
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
