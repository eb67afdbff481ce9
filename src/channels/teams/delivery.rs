//! Teams' side of the kit's deliverers ([`crate::channels::kit::delivery`]):
//! which conversation a request's card goes to (and through which service
//! URL), the card rendered for its current state, and the Bot Connector's
//! POST / PUT of the activity. The kit decides when a post is not
//! repeated, when an update is skipped, and how failures are retried and
//! audited; 429 (with its `Retry-After`), 5xx and transport errors are
//! transient, other 4xx permanent.

use serde_json::{Value, json};

use super::Teams;
use super::card::{CONTENT_TYPE, FULL_TEXT_COMMAND, Tone, escape};
use super::connector::CallError;
use super::conversations;
use crate::channels::kit::delivery::{ChatApi, DeliveryError, Destination};
use crate::channels::kit::escalation_notice::EscalationNotice;
use crate::channels::kit::notice::OutcomeNotice;
use crate::channels::kit::view::shown_principal;
use crate::domain::{Principal, Status};
use crate::store::chat_messages::{self, ChatMessage};
use crate::store::requests::Approval;

impl From<CallError> for DeliveryError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Retry {
                error,
                after,
                status,
            } => DeliveryError::Transient {
                message: error,
                retry_after: after,
                status,
            },
            CallError::Failed { error, status } => DeliveryError::Permanent {
                message: error,
                status,
            },
        }
    }
}

#[async_trait::async_trait]
impl ChatApi for Teams {
    fn name(&self) -> &'static str {
        super::CHANNEL
    }

    fn keys(&self) -> (&'static str, &'static str) {
        ("conversation", "activity_id")
    }

    async fn destination(&self, a: &Approval) -> Result<Destination, DeliveryError> {
        let (conversation, service_url) = conversations::destination(
            &self.app.store,
            &self.app.settings.teams,
            a.teams_conversation.as_deref(),
        )
        .await?
        .map_err(DeliveryError::permanent)?;
        Ok(Destination {
            conversation,
            extra: Some(json!({ "service_url": service_url })),
        })
    }

    async fn post(&self, to: &Destination, a: &Approval) -> Result<ChatMessage, DeliveryError> {
        let service_url = service_url(to.extra.as_ref())
            .ok_or_else(|| DeliveryError::permanent("no service URL for the conversation"))?;
        let activity = self.message(a).await?;
        let activity_id = self
            .connector
            .post(&service_url, &to.conversation, &activity)
            .await?;
        Ok(ChatMessage {
            conversation: to.conversation.clone(),
            message_id: activity_id,
            extra: to.extra.clone(),
        })
    }

    async fn update(&self, at: &ChatMessage, a: &Approval) -> Result<(), DeliveryError> {
        let service_url = service_url(at.extra.as_ref())
            .or_else(|| self.app.settings.teams.service_url.clone())
            .ok_or_else(|| DeliveryError::permanent("no service URL for the posted card"))?;
        let mut activity = self.message(a).await?;
        activity["id"] = json!(at.message_id);
        self.connector
            .update(&service_url, &at.conversation, &at.message_id, &activity)
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
        let service_url = service_url(at.extra.as_ref())
            .or_else(|| self.app.settings.teams.service_url.clone())
            .ok_or_else(|| DeliveryError::permanent("no service URL for the posted card"))?;
        let (named, entities) = self.mentions(&service_url, &at.conversation, who).await?;
        // A message's text is markdown in Teams: the sentence and every
        // name are escaped; only the mention tags are markup.
        let mut line = escape(text, 1000);
        if !named.is_empty() {
            line.push_str(&format!(" Who may decide: {}", named.join(", ")));
        }
        let mut activity = json!({ "type": "message", "text": line });
        if !entities.is_empty() {
            activity["entities"] = json!(entities);
        }
        self.connector
            .reply(&service_url, &at.conversation, &at.message_id, &activity)
            .await?;
        Ok(())
    }

    async fn destination_named(&self, conversation: &str) -> Result<Destination, DeliveryError> {
        let (conversation, service_url) = conversations::destination(
            &self.app.store,
            &self.app.settings.teams,
            Some(conversation),
        )
        .await?
        .map_err(DeliveryError::permanent)?;
        Ok(Destination {
            conversation,
            extra: Some(json!({ "service_url": service_url })),
        })
    }

    async fn announce(
        &self,
        to: &Destination,
        notice: &EscalationNotice,
        who: &[String],
        original: Option<&ChatMessage>,
    ) -> Result<ChatMessage, DeliveryError> {
        let service_url = service_url(to.extra.as_ref())
            .ok_or_else(|| DeliveryError::permanent("no service URL for the conversation"))?;
        let (named, entities) = self.mentions(&service_url, &to.conversation, who).await?;
        // Markdown: every value escaped, only the mention tags are markup;
        // a blank line between paragraphs is Teams' line break.
        let mut text = format!(
            "**{}**\n\n{}",
            escape(&notice.title, 300),
            escape(&notice.sentence, 300)
        );
        if !named.is_empty() {
            text.push_str(&format!(" Added: {}", named.join(", ")));
        }
        for (label, value) in &notice.lines {
            text.push_str(&format!("\n\n{label}: {}", escape(value, 1000)));
        }
        if original.is_some() {
            text.push_str("\n\nDecide on its card in the conversation it was posted to.");
        }
        let mut activity = json!({ "type": "message", "text": text });
        if !entities.is_empty() {
            activity["entities"] = json!(entities);
        }
        let id = self
            .connector
            .post(&service_url, &to.conversation, &activity)
            .await?;
        Ok(ChatMessage {
            conversation: to.conversation.clone(),
            message_id: id,
            extra: to.extra.clone(),
        })
    }

    fn full_text_command(&self) -> &'static str {
        FULL_TEXT_COMMAND
    }

    async fn direct(
        &self,
        to: &Principal,
        a: &Approval,
        notice: &OutcomeNotice,
    ) -> Result<Option<ChatMessage>, DeliveryError> {
        let Some(email) = to.as_str().strip_prefix("user:") else {
            return Ok(None);
        };
        // The person is found among the members of the conversation the
        // card went to: the Bot Connector has no lookup by e-mail.
        let (conversation, service_url) =
            match chat_messages::find(&self.app.store, a.id, super::CHANNEL).await? {
                Some(m) => {
                    let url = service_url(m.extra.as_ref())
                        .or_else(|| self.app.settings.teams.service_url.clone());
                    match url {
                        Some(u) => (m.conversation, u),
                        None => return Ok(None),
                    }
                }
                None => {
                    let d = self.destination(a).await?;
                    let url = service_url(d.extra.as_ref()).unwrap_or_default();
                    (d.conversation, url)
                }
            };
        let members = self.connector.members(&service_url, &conversation).await?;
        let Some(member) = members.into_iter().find(|m| {
            [&m.email, &m.user_principal_name]
                .into_iter()
                .flatten()
                .any(|mail| mail.eq_ignore_ascii_case(email))
        }) else {
            return Ok(None);
        };
        let Some(member_id) = member.id.filter(|id| !id.is_empty()) else {
            return Ok(None);
        };
        let chat = self
            .connector
            .open_chat(&service_url, &member_id, self.tenant.as_deref())
            .await?;
        let text = notice
            .lines
            .iter()
            .map(|(label, value)| format!("{label}: {value}"))
            .collect::<Vec<_>>()
            .join("\n");
        let tone = match a.status {
            Status::Approved => Tone::Good,
            Status::Denied => Tone::Attention,
            _ => Tone::Warning,
        };
        let card = self
            .templates
            .notice_card(tone, &notice.title, &text)
            .map_err(|e| DeliveryError::permanent(format!("rendering the notice failed: {e:#}")))?;
        let activity = json!({
            "type": "message",
            "summary": format!("Request {}: {}", a.status.as_str(), a.action),
            "attachments": [{ "contentType": CONTENT_TYPE, "content": card }],
        });
        let id = self.connector.post(&service_url, &chat, &activity).await?;
        Ok(Some(ChatMessage {
            conversation: chat,
            message_id: id,
            extra: None,
        }))
    }
}

impl Teams {
    /// `who` (principals) as a message names them: members of
    /// `conversation` are @mentioned (Teams notifies them), the others are
    /// named. A failed member lookup names everyone rather than lose the
    /// message, unless it is worth retrying.
    async fn mentions(
        &self,
        service_url: &str,
        conversation: &str,
        who: &[String],
    ) -> Result<(Vec<String>, Vec<Value>), DeliveryError> {
        if who.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let members = match self
            .connector
            .members(service_url, conversation)
            .await
            .map_err(DeliveryError::from)
        {
            Ok(m) => m,
            Err(e @ DeliveryError::Transient { .. }) => return Err(e),
            Err(_) => Vec::new(),
        };
        let mut named: Vec<String> = Vec::new();
        let mut entities: Vec<Value> = Vec::new();
        for p in who {
            let member = p.strip_prefix("user:").and_then(|email| {
                members.iter().find(|m| {
                    m.id.as_deref().is_some_and(|id| !id.is_empty())
                        && [&m.email, &m.user_principal_name]
                            .into_iter()
                            .flatten()
                            .any(|mail| mail.eq_ignore_ascii_case(email))
                })
            });
            match member {
                Some(m) => {
                    let name = escape(m.name.as_deref().unwrap_or(shown_principal(p)), 100);
                    let tag = format!("<at>{name}</at>");
                    entities.push(json!({
                        "type": "mention",
                        "text": tag,
                        "mentioned": { "id": m.id, "name": name },
                    }));
                    named.push(tag);
                }
                None => named.push(escape(shown_principal(p), 200)),
            }
        }
        Ok((named, entities))
    }

    /// The request's card in a message activity, for its current state.
    async fn message(&self, a: &Approval) -> Result<Value, DeliveryError> {
        let console =
            crate::channels::kit::console_link::ConsoleLink::for_request(&self.app, a).await?;
        let card = self
            .templates
            .request_card_with(a, None, &console)
            .map_err(|e| DeliveryError::permanent(format!("rendering the card failed: {e:#}")))?;
        Ok(json!({
            "type": "message",
            // Shown in notifications, which are plain text: the action is a
            // validated identifier, never free agent text.
            "summary": format!("Approval needed: {}", a.action),
            "attachments": [{ "contentType": CONTENT_TYPE, "content": card }],
        }))
    }
}

fn service_url(extra: Option<&Value>) -> Option<String> {
    extra?.get("service_url")?.as_str().map(str::to_string)
}
