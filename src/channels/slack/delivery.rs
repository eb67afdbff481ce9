//! Slack's side of the kit's deliverers ([`crate::channels::kit::delivery`]):
//! which channel a request goes to, the message rendered for its current
//! state, and `chat.postMessage` / `chat.update`. The kit decides when a
//! post is not repeated, when an update is skipped, and how failures are
//! retried and audited.

use slack_morphism::prelude::SlackMessageContent;

use super::Slack;
use super::client::ApiError;
use super::identity::slack_names;
use super::limits::{MAX_FALLBACK, clip, mrkdwn};
use super::render::{FULL_TEXT_COMMAND, person};
use crate::channels::kit::delivery::{ChatApi, DeliveryError, Destination};
use crate::channels::kit::escalation_notice::EscalationNotice;
use crate::channels::kit::notice::OutcomeNotice;
use crate::domain::Principal;
use crate::store::chat_messages::ChatMessage;
use crate::store::requests::Approval;

impl From<ApiError> for DeliveryError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Temporary {
                message,
                retry_after,
            } => DeliveryError::Transient {
                message,
                retry_after,
                status: None,
            },
            ApiError::Permanent { message } => DeliveryError::Permanent {
                message,
                status: None,
            },
        }
    }
}

#[async_trait::async_trait]
impl ChatApi for Slack {
    fn name(&self) -> &'static str {
        super::CHANNEL
    }

    fn keys(&self) -> (&'static str, &'static str) {
        ("channel", "ts")
    }

    async fn destination(&self, a: &Approval) -> Result<Destination, DeliveryError> {
        let channel = a
            .slack_channel
            .clone()
            .or_else(|| self.app.settings.slack.channel.clone())
            .ok_or_else(|| {
                DeliveryError::permanent(
                    "no Slack channel: set COUNTERSIGN_SLACK_CHANNEL or the policy rule's slack_channel",
                )
            })?;
        Ok(Destination {
            conversation: channel,
            extra: None,
        })
    }

    async fn post(&self, to: &Destination, a: &Approval) -> Result<ChatMessage, DeliveryError> {
        let content = self.message(a).await?;
        let (channel, ts) = self.api.post_message(&to.conversation, content).await?;
        Ok(ChatMessage {
            conversation: channel,
            message_id: ts,
            extra: None,
        })
    }

    async fn update(&self, at: &ChatMessage, a: &Approval) -> Result<(), DeliveryError> {
        let content = self.message(a).await?;
        self.api
            .update_message(&at.conversation, &at.message_id, content)
            .await?;
        Ok(())
    }

    async fn remind(
        &self,
        at: &ChatMessage,
        _a: &Approval,
        text: &str,
        who: &[String],
    ) -> Result<(), DeliveryError> {
        let principals: Vec<&str> = who.iter().map(String::as_str).collect();
        let names = slack_names(&self.app.store, &principals).await?;
        let mut line = mrkdwn(text);
        if !who.is_empty() {
            let named: Vec<String> = who.iter().map(|p| person(p, &names)).collect();
            line.push_str(&format!(" Who may decide: {}", named.join(", ")));
        }
        let content = SlackMessageContent::new().with_text(clip(&line, MAX_FALLBACK));
        self.api
            .post_reply(&at.conversation, &at.message_id, content)
            .await?;
        Ok(())
    }

    async fn destination_named(&self, conversation: &str) -> Result<Destination, DeliveryError> {
        Ok(Destination {
            conversation: conversation.to_string(),
            extra: None,
        })
    }

    async fn announce(
        &self,
        to: &Destination,
        notice: &EscalationNotice,
        who: &[String],
        original: Option<&ChatMessage>,
    ) -> Result<ChatMessage, DeliveryError> {
        // mrkdwn, each value defused: agent text cannot format or ping;
        // only the added people become mentions.
        let mut text = format!("*{}*\n{}", mrkdwn(&notice.title), mrkdwn(&notice.sentence));
        let mut named = Vec::with_capacity(who.len());
        for p in who {
            named.push(self.mention(p).await?);
        }
        if !named.is_empty() {
            text.push_str(&format!(" Added: {}", named.join(", ")));
        }
        for (label, value) in &notice.lines {
            text.push_str(&format!("\n{label}: {}", mrkdwn(value)));
        }
        // A channel id is letters and digits; anything else is not linked.
        if let Some(at) = original.filter(|m| {
            !m.conversation.is_empty() && m.conversation.chars().all(|c| c.is_ascii_alphanumeric())
        }) {
            text.push_str(&format!(
                "\nDecide on its message in <#{}>.",
                at.conversation
            ));
        }
        let content = SlackMessageContent::new().with_text(clip(&text, MAX_FALLBACK));
        let (channel, ts) = self.api.post_message(&to.conversation, content).await?;
        Ok(ChatMessage {
            conversation: channel,
            message_id: ts,
            extra: None,
        })
    }

    fn full_text_command(&self) -> &'static str {
        FULL_TEXT_COMMAND
    }

    async fn direct(
        &self,
        to: &Principal,
        _a: &Approval,
        notice: &OutcomeNotice,
    ) -> Result<Option<ChatMessage>, DeliveryError> {
        let Some(user) = self.user_of(to).await? else {
            return Ok(None);
        };
        // mrkdwn, each value defused: agent text cannot format or ping.
        let mut text = format!("*{}*", mrkdwn(&notice.title));
        for (label, value) in &notice.lines {
            text.push_str(&format!("\n{label}: {}", mrkdwn(value)));
        }
        let content = SlackMessageContent::new().with_text(clip(&text, MAX_FALLBACK));
        // A user id as the channel opens (or reuses) the bot's DM with them.
        let (channel, ts) = self.api.post_message(&user, content).await?;
        Ok(Some(ChatMessage {
            conversation: channel,
            message_id: ts,
            extra: None,
        }))
    }
}

impl Slack {
    /// The Slack user of a principal: the account they used here before,
    /// else the one with their e-mail address.
    async fn user_of(&self, p: &Principal) -> Result<Option<String>, DeliveryError> {
        let known = slack_names(&self.app.store, &[p.as_str()]).await?;
        if let Some(user) = known.get(p.as_str()) {
            return Ok(Some(user.clone()));
        }
        let Some(email) = p.as_str().strip_prefix("user:") else {
            return Ok(None);
        };
        Ok(self.api.lookup_by_email(email).await?)
    }

    /// A principal as a mention when they have a Slack account (linked
    /// before, else found by e-mail address), else by name, defused.
    async fn mention(&self, principal: &str) -> Result<String, DeliveryError> {
        let user = match Principal::parse(principal) {
            Ok(p) => self.user_of(&p).await?,
            Err(_) => None,
        };
        let names = user
            .map(|u| [(principal.to_string(), u)].into_iter().collect())
            .unwrap_or_default();
        Ok(person(principal, &names))
    }

    /// The request's message, rendered for its current state.
    async fn message(&self, a: &Approval) -> Result<SlackMessageContent, DeliveryError> {
        // Only deciders become mentions; naming the on-behalf-of person in a
        // new post would ping them about a request they cannot decide.
        let mut principals: Vec<&str> = a.approvals.iter().map(|d| d.principal.as_str()).collect();
        principals.extend(a.decided_by.as_deref());
        let names = slack_names(&self.app.store, &principals).await?;
        let console =
            crate::channels::kit::console_link::ConsoleLink::for_request(&self.app, a).await?;
        self.templates
            .request_message_with(a, &names, &console)
            .map_err(|e| {
                DeliveryError::permanent(format!("rendering the Slack message failed: {e:#}"))
            })
    }
}
