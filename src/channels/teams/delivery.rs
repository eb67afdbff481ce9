//! The outbox handlers `teams.post` and `teams.update`.
//!
//! The core queues a post when a request needs approval and an update on
//! every change, in one lane per request, so an update never overtakes its
//! post. A post renders the card from the request's state at delivery time
//! and returns where it landed (the core stores it in `chat_messages` in
//! the same transaction that finishes the row); an update PUTs the card
//! rendered from the then-current state over that activity. 429 (with its
//! `Retry-After`), 5xx and transport errors are retried by the outbox;
//! other 4xx are permanent.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Teams;
use super::card::CONTENT_TYPE;
use super::connector::CallError;
use super::conversations;
use crate::outbox::{ChatMessageRef, Deliverer, Delivery, OutboxItem};
use crate::service::App;
use crate::store::chat_messages::{self, ChatMessage};
use crate::store::requests::{self, Approval};

pub const POST: &str = "teams.post";
pub const UPDATE: &str = "teams.update";

pub struct TeamsDeliverer {
    pub teams: Arc<Teams>,
    pub app: App,
}

fn message(card: Value, a: &Approval) -> Value {
    json!({
        "type": "message",
        // Shown in notifications, which are plain text: the action is a
        // validated identifier, never free agent text.
        "summary": format!("Approval needed: {}", a.action),
        "attachments": [{ "contentType": CONTENT_TYPE, "content": card }],
    })
}

fn failed(error: String, data: Value) -> Delivery {
    Delivery::Failed {
        audit: Some(("teams.failed".into(), with_error(data, &error))),
        error,
    }
}

fn with_error(mut data: Value, error: &str) -> Value {
    data["error"] = json!(error);
    data
}

fn from_call(e: CallError, mut data: Value) -> Delivery {
    data["status"] = json!(e.status());
    match e {
        CallError::Retry { error, after, .. } => Delivery::Retry {
            audit: Some(("teams.failed".into(), with_error(data, &error))),
            error,
            after,
        },
        CallError::Failed { error, .. } => failed(error, data),
    }
}

fn retry(error: String) -> Delivery {
    Delivery::Retry {
        error,
        after: None,
        audit: None,
    }
}

#[async_trait::async_trait]
impl Deliverer for TeamsDeliverer {
    async fn deliver(&self, item: &OutboxItem) -> Delivery {
        let Some(id) = item.request_uuid() else {
            return Delivery::Failed {
                error: "the row names no request".into(),
                audit: None,
            };
        };
        let approval = match requests::get(&self.app.store, id).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                return Delivery::Failed {
                    error: format!("request {id} does not exist"),
                    audit: None,
                };
            }
            Err(e) => return retry(format!("reading the request failed: {e}")),
        };
        let attempt = item.attempts + 1;
        match item.kind.as_str() {
            POST => self.post(&approval, attempt).await,
            _ => self.update(&approval, attempt).await,
        }
    }
}

impl TeamsDeliverer {
    async fn post(&self, a: &Approval, attempt: i64) -> Delivery {
        let dest = conversations::destination(
            &self.app.store,
            &self.app.settings.teams,
            a.teams_conversation.as_deref(),
        )
        .await;
        let (conversation, service_url) = match dest {
            Ok(Ok(d)) => d,
            Ok(Err(why)) => return failed(why, json!({ "attempt": attempt })),
            Err(e) => return retry(format!("reading Teams conversations failed: {e}")),
        };
        let data = json!({ "conversation": conversation, "attempt": attempt });
        let card = match self.teams.templates.request_card(a, None) {
            Ok(c) => c,
            Err(e) => return failed(format!("rendering the card failed: {e:#}"), data),
        };
        match self
            .teams
            .connector
            .post(&service_url, &conversation, &message(card, a))
            .await
        {
            Ok(activity_id) => Delivery::Delivered {
                audit: Some((
                    "teams.posted".into(),
                    json!({ "conversation": conversation, "activity_id": activity_id, "attempt": attempt }),
                )),
                message: Some(ChatMessageRef {
                    channel: "teams",
                    conversation,
                    message_id: activity_id,
                    extra: Some(json!({ "service_url": service_url })),
                }),
            },
            Err(e) => from_call(e, data),
        }
    }

    async fn update(&self, a: &Approval, attempt: i64) -> Delivery {
        let posted = chat_messages::find(&self.app.store, a.id, "teams").await;
        let ChatMessage {
            conversation,
            message_id: activity_id,
            extra,
        } = match posted {
            Ok(Some(m)) => m,
            // The post never landed (it failed for good): nothing to update.
            Ok(None) => {
                return Delivery::Delivered {
                    audit: None,
                    message: None,
                };
            }
            Err(e) => return retry(format!("reading the posted card failed: {e}")),
        };
        let service_url = extra
            .and_then(|e| e.get("service_url")?.as_str().map(str::to_string))
            .or_else(|| self.app.settings.teams.service_url.clone());
        let data =
            json!({ "conversation": conversation, "activity_id": activity_id, "attempt": attempt });
        let Some(service_url) = service_url else {
            return failed("no service URL for the posted card".into(), data);
        };
        let card = match self.teams.templates.request_card(a, None) {
            Ok(c) => c,
            Err(e) => return failed(format!("rendering the card failed: {e:#}"), data),
        };
        let mut activity = message(card, a);
        activity["id"] = json!(activity_id);
        match self
            .teams
            .connector
            .update(&service_url, &conversation, &activity_id, &activity)
            .await
        {
            Ok(()) => Delivery::Delivered {
                audit: Some((
                    "teams.updated".into(),
                    json!({ "conversation": conversation, "activity_id": activity_id, "status": a.status, "attempt": attempt }),
                )),
                message: None,
            },
            Err(e) => from_call(e, data),
        }
    }
}
