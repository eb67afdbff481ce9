//! Teams' side of the kit's deliverers ([`crate::channels::kit::delivery`]):
//! which conversation a request's card goes to (and through which service
//! URL), the card rendered for its current state, and the Bot Connector's
//! POST / PUT of the activity. The kit decides when a post is not
//! repeated, when an update is skipped, and how failures are retried and
//! audited; 429 (with its `Retry-After`), 5xx and transport errors are
//! transient, other 4xx permanent.

use serde_json::{Value, json};

use super::Teams;
use super::card::CONTENT_TYPE;
use super::connector::CallError;
use super::conversations;
use crate::channels::kit::delivery::{ChatApi, DeliveryError, Destination};
use crate::store::chat_messages::ChatMessage;
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
        let activity = self.message(a)?;
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
        let mut activity = self.message(a)?;
        activity["id"] = json!(at.message_id);
        self.connector
            .update(&service_url, &at.conversation, &at.message_id, &activity)
            .await?;
        Ok(())
    }
}

impl Teams {
    /// The request's card in a message activity, for its current state.
    fn message(&self, a: &Approval) -> Result<Value, DeliveryError> {
        let card = self
            .templates
            .request_card(a, None)
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
