//! Block Kit from templates: the approval message, the deny modal and the
//! `/audit` answers.
//!
//! Templates live in `templates/slack/`, loaded by the kit's loader
//! ([`TemplateSet`]: compiled in, overridable from `<templates_dir>/slack/`).
//! Each renders a JSON array of blocks. What a template sees was prepared
//! in [`request`] and [`audit`] from the kit's views: every string an agent
//! supplied is already escaped and shortened, so an override cannot forget
//! to. The rendered JSON is then brought within Slack's limits
//! ([`limits::fit`]) and parsed into slack-morphism's Block Kit types, so a
//! template that produces something Slack would not accept fails here,
//! loudly, not at Slack; [`Templates::check`] renders every template at
//! start with [`samples`].

pub mod audit;
pub mod request;
pub mod samples;

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};
use slack_morphism::prelude::*;

use super::limits::{self, clip, escape_clip};
use crate::channels::kit::templates::TemplateSet;
use crate::service::audit_query::AuditAnswer;
use crate::store::requests::Approval;
pub use audit::TIMELINE_PAGE;
pub use request::{ButtonValue, FULL_TEXT_COMMAND, RequestView, SlackNames, person};

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
        include_str!("../../../../templates/slack/request.json.j2"),
    ),
    (
        DENY_MODAL,
        include_str!("../../../../templates/slack/deny_modal.json.j2"),
    ),
    (
        AUDIT_REQUESTS,
        include_str!("../../../../templates/slack/audit_requests.json.j2"),
    ),
    (
        AUDIT_TIMELINE,
        include_str!("../../../../templates/slack/audit_timeline.json.j2"),
    ),
    (
        AUDIT_PERSON,
        include_str!("../../../../templates/slack/audit_person.json.j2"),
    ),
    (
        AUDIT_VERIFY,
        include_str!("../../../../templates/slack/audit_verify.json.j2"),
    ),
    (
        AUDIT_HELP,
        include_str!("../../../../templates/slack/audit_help.json.j2"),
    ),
    (
        "audit_pager.json.j2",
        include_str!("../../../../templates/slack/audit_pager.json.j2"),
    ),
];

/// Action ids of the buttons and the modal, shared with the interactivity
/// handler.
pub const APPROVE: &str = "countersign_approve";
/// The "Open in Countersign" link button (Slack still reports its click,
/// which is ignored).
pub const OPEN: &str = "countersign_open";

pub use crate::channels::kit::console_link::ConsoleLink;
pub const DENY: &str = "countersign_deny";
pub const AUDIT_PAGE: &str = "countersign_audit_page";
pub const DENY_CALLBACK: &str = "countersign_deny";
pub const REASON: &str = "reason";

pub struct Templates {
    set: TemplateSet,
}

impl Templates {
    /// The compiled-in templates, each replaced by `<dir>/slack/<name>` if
    /// that file exists. Fails on a syntax error or a template that fails
    /// the self-check, so a bad override stops the service at start instead
    /// of silently breaking approvals.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let t = Self {
            set: TemplateSet::load("slack", BUILT_IN, dir)?,
        };
        t.check()?;
        Ok(t)
    }

    /// Renders one template into blocks within Slack's limits.
    pub fn blocks(&self, name: &str, ctx: Value) -> anyhow::Result<Vec<SlackBlock>> {
        let mut value = self.set.render(name, &ctx)?;
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
        self.request_message_with(a, names, &ConsoleLink::default())
    }

    /// [`request_message`](Self::request_message) with the console's link
    /// and step-up note.
    pub fn request_message_with(
        &self,
        a: &Approval,
        names: &SlackNames,
        console: &ConsoleLink,
    ) -> anyhow::Result<SlackMessageContent> {
        let r = RequestView::new(a, names);
        let blocks = self.blocks(REQUEST, json!({ "r": r, "console": console }))?;
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
        let (name, ctx, fallback) = audit::context(answer, page, query, names);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Risk, Status};

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
