//! The outbox handlers of every channel: `<channel>.post` puts a request
//! needing approval in its conversation, `<channel>.update` rewrites that
//! same message after every change; `.remind`, `.escalate` and `.notify`
//! tell people about it (a reminder in its thread, the escalation notice
//! in the rule's escalation channel, the outcome to the person an agent
//! acted for).
//!
//! Both run in the request's lane (`<channel>:<id>`), one at a time and in
//! order, so an update never overtakes its post. Both render the request
//! as it is *now*, so an update queued before a later change still shows
//! the latest state. Two rules keep a conversation clean, on every
//! platform:
//!
//! - a post whose message already exists is not repeated (a retry after
//!   the platform accepted it, or a second post row, would show the
//!   request twice, with two sets of live buttons);
//! - an update with a newer one queued behind it is skipped: the newer one
//!   will show everything this one would.
//!
//! A platform implements [`ChatApi`] (render, where to post, post, update)
//! and sorts its failures into one [`DeliveryError`]: transient ones are
//! retried with backoff (no sooner than the platform's `Retry-After`),
//! permanent ones are given up at once; both are audited as
//! `<channel>.failed`, in one shape.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::console_link::ConsoleLink;
use super::escalation_notice::EscalationNotice;
use super::notice::OutcomeNotice;
use crate::domain::Principal;
use crate::outbox::{ChatMessageRef, Deliverer, Delivery, Outbox, OutboxItem};
use crate::service::App;
use crate::store::chat_messages::{self, ChatMessage};
use crate::store::requests::{self, Approval};

/// Why a platform call did not succeed, in the terms the outbox needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// The platform is down, slow, rate-limiting us or said so: try again,
    /// no sooner than `retry_after` if it gave one.
    Transient {
        message: String,
        retry_after: Option<Duration>,
        status: Option<u16>,
    },
    /// Retrying will not help (bad token, unknown conversation, …).
    Permanent {
        message: String,
        status: Option<u16>,
    },
    /// Our own store could not be read: retried, not audited (it says
    /// nothing about the platform).
    Store(String),
}

impl DeliveryError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
            status: None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Transient { message, .. } | Self::Permanent { message, .. } => message,
            Self::Store(message) => message,
        }
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl From<crate::error::AppError> for DeliveryError {
    fn from(e: crate::error::AppError) -> Self {
        tracing::error!(error = %format!("{e:#}"), "reading the store for a chat delivery failed");
        Self::Store("the store could not be read".into())
    }
}

/// Where a new message goes: a conversation (Slack channel, Teams
/// conversation) and what else the platform needs to reach it.
#[derive(Debug, Clone)]
pub struct Destination {
    pub conversation: String,
    pub extra: Option<Value>,
}

/// What a platform does for the deliverers; everything else is here.
#[async_trait::async_trait]
pub trait ChatApi: Send + Sync + 'static {
    /// The channel's name: outbox kinds `<name>.post` / `<name>.update`,
    /// audit kinds `<name>.posted` / `.updated` / `.failed`.
    fn name(&self) -> &'static str;
    /// What the platform calls a conversation and a message id, as keys
    /// of the audit data (`channel`/`ts`, `conversation`/`activity_id`).
    fn keys(&self) -> (&'static str, &'static str);
    /// Where a new message for `a` goes.
    async fn destination(&self, a: &Approval) -> Result<Destination, DeliveryError>;
    /// Posts `a` as it is now; returns the posted message.
    async fn post(&self, to: &Destination, a: &Approval) -> Result<ChatMessage, DeliveryError>;
    /// Rewrites the posted message `at` to show `a` as it is now.
    async fn update(&self, at: &ChatMessage, a: &Approval) -> Result<(), DeliveryError>;
    /// Reminds the approvers of pending `a` in the thread of (or a reply
    /// to) its message `at`; `who` are the approvers to name.
    async fn remind(
        &self,
        at: &ChatMessage,
        a: &Approval,
        text: &str,
        who: &[String],
    ) -> Result<(), DeliveryError>;
    /// Where a message to `conversation`, named by the policy rather than
    /// by a request (an `escalate_channel`), goes.
    async fn destination_named(&self, conversation: &str) -> Result<Destination, DeliveryError>;
    /// Posts the escalation notice to `to`, mentioning `who` (the people
    /// escalation added, as principals) where the platform can; `original`
    /// is the request's own message, if it was posted, to point at.
    async fn announce(
        &self,
        to: &Destination,
        notice: &EscalationNotice,
        who: &[String],
        original: Option<&ChatMessage>,
    ) -> Result<ChatMessage, DeliveryError>;
    /// The platform's command that shows a request in full (`/audit`).
    fn full_text_command(&self) -> &'static str;
    /// Sends `notice` about `a` to `to` in a direct message; `None` when
    /// `to` has no account on this platform.
    async fn direct(
        &self,
        to: &Principal,
        a: &Approval,
        notice: &OutcomeNotice,
    ) -> Result<Option<ChatMessage>, DeliveryError>;
}

pub fn post_kind(channel: &str) -> String {
    format!("{channel}.post")
}

pub fn update_kind(channel: &str) -> String {
    format!("{channel}.update")
}

pub fn notify_kind(channel: &str) -> String {
    format!("{channel}.notify")
}

pub fn remind_kind(channel: &str) -> String {
    format!("{channel}.remind")
}

pub fn escalate_kind(channel: &str) -> String {
    format!("{channel}.escalate")
}

/// Registers every handler of `api`'s channel (post, update, remind, escalate, notify).
pub fn register<C: ChatApi>(outbox: &mut Outbox, app: &App, api: Arc<C>) {
    let name = api.name();
    let deliverer = Arc::new(ChatDeliverer {
        app: app.clone(),
        api,
    });
    outbox.register(&post_kind(name), deliverer.clone());
    outbox.register(&notify_kind(name), deliverer.clone());
    outbox.register(&remind_kind(name), deliverer.clone());
    outbox.register(&escalate_kind(name), deliverer.clone());
    outbox.register(&update_kind(name), deliverer);
}

/// The post and update handler of one channel.
pub struct ChatDeliverer<C> {
    app: App,
    api: Arc<C>,
}

#[async_trait::async_trait]
impl<C: ChatApi> Deliverer for ChatDeliverer<C> {
    async fn deliver(&self, item: &OutboxItem) -> Delivery {
        let attempt = item.attempts + 1;
        let name = self.api.name();
        let step = if item.kind == post_kind(name) {
            self.post(item, attempt).await
        } else if item.kind == notify_kind(name) {
            self.notify(item, attempt).await
        } else if item.kind == remind_kind(name) {
            self.remind(item, attempt).await
        } else if item.kind == escalate_kind(name) {
            self.escalate(item, attempt).await
        } else {
            self.update(item, attempt).await
        };
        match step {
            Ok(d) => d,
            Err((e, at)) => self.failure(e, attempt, at),
        }
    }
}

/// A failed step and what is known of where it was going.
type Failure = (DeliveryError, Value);

impl<C: ChatApi> ChatDeliverer<C> {
    async fn post(&self, item: &OutboxItem, attempt: i64) -> Result<Delivery, Failure> {
        let a = self.load(item).await?;
        if self.posted(&a).await?.is_some() {
            return Ok(nothing());
        }
        let to = self.api.destination(&a).await.map_err(|e| (e, json!({})))?;
        let (conv_key, id_key) = self.api.keys();
        let at = json!({ conv_key: to.conversation });
        let posted = self.api.post(&to, &a).await.map_err(|e| (e, at))?;
        Ok(Delivery::Delivered {
            audit: Some((
                format!("{}.posted", self.api.name()),
                json!({ conv_key: posted.conversation, id_key: posted.message_id, "attempt": attempt }),
            )),
            message: Some(ChatMessageRef {
                channel: self.api.name(),
                conversation: posted.conversation,
                message_id: posted.message_id,
                extra: posted.extra,
            }),
        })
    }

    async fn update(&self, item: &OutboxItem, attempt: i64) -> Result<Delivery, Failure> {
        let later = crate::store::outbox::later_queued(
            &self.app.store,
            item,
            &update_kind(self.api.name()),
        )
        .await
        .map_err(|e| (e.into(), json!({})))?;
        if later {
            return Ok(nothing());
        }
        let a = self.load(item).await?;
        // The post was given up (its failure is audited): nothing to update.
        let Some(at) = self.posted(&a).await? else {
            return Ok(nothing());
        };
        let (conv_key, id_key) = self.api.keys();
        let place = json!({ conv_key: at.conversation, id_key: at.message_id });
        self.api
            .update(&at, &a)
            .await
            .map_err(|e| (e, place.clone()))?;
        let mut data = place;
        data["status"] = json!(a.status);
        data["attempt"] = json!(attempt);
        Ok(Delivery::Delivered {
            audit: Some((format!("{}.updated", self.api.name()), data)),
            message: None,
        })
    }

    /// A reminder to the approvers of a request still pending.
    async fn remind(&self, item: &OutboxItem, attempt: i64) -> Result<Delivery, Failure> {
        let a = self.load(item).await?;
        // Decided since it was queued, or never posted: nothing to remind of.
        let posted = self.posted(&a).await?;
        let (Some(at), true) = (posted, a.status == crate::domain::Status::Pending) else {
            return Ok(nothing());
        };
        let n = item.payload_json()["reminder"].as_u64().unwrap_or(1);
        let missing =
            a.required_approvals as usize - a.approvals.len().min(a.required_approvals as usize);
        let text = format!(
            "Reminder {n}: this request still needs {missing} more approval{}. Decide on the message above.",
            if missing == 1 { "" } else { "s" }
        );
        let who: Vec<String> = a
            .approvers
            .iter()
            .filter(|p| !a.approvals.iter().any(|d| d.principal == p.as_str()))
            .take(10)
            .map(|p| p.as_str().to_string())
            .collect();
        let (conv_key, id_key) = self.api.keys();
        let place = json!({ conv_key: at.conversation, id_key: at.message_id });
        self.api
            .remind(&at, &a, &text, &who)
            .await
            .map_err(|e| (e, place.clone()))?;
        let mut data = place;
        data["reminder"] = json!(n);
        data["mentioned"] = json!(who);
        data["attempt"] = json!(attempt);
        Ok(Delivery::Delivered {
            audit: Some((format!("{}.reminded", self.api.name()), data)),
            message: None,
        })
    }

    /// The escalation notice in the rule's `escalate_channel` /
    /// `escalate_conversation`, naming the people escalation added.
    async fn escalate(&self, item: &OutboxItem, attempt: i64) -> Result<Delivery, Failure> {
        let a = self.load(item).await?;
        // Decided since it escalated: nobody needs to be asked any more.
        if a.status != crate::domain::Status::Pending {
            return Ok(nothing());
        }
        let payload = item.payload_json();
        let Some(conversation) = payload["conversation"].as_str() else {
            let e = DeliveryError::permanent("the escalation row names no conversation");
            return Err((e, json!({})));
        };
        let who: Vec<String> = payload["added"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|p| !a.approvals.iter().any(|d| d.principal == *p))
            .take(10)
            .map(str::to_string)
            .collect();
        let after = Duration::from_secs(payload["after_secs"].as_u64().unwrap_or(0));
        let console = ConsoleLink::for_request(&self.app, &a)
            .await
            .map_err(|e| (e.into(), json!({})))?;
        let notice = EscalationNotice::new(
            &a,
            payload["label"].as_str().unwrap_or_default(),
            after,
            self.api.full_text_command(),
            console.url.as_deref(),
        );
        let original = self.posted(&a).await?;
        let (conv_key, id_key) = self.api.keys();
        let at = json!({ conv_key: conversation });
        let to = self
            .api
            .destination_named(conversation)
            .await
            .map_err(|e| (e, at.clone()))?;
        let posted = self
            .api
            .announce(&to, &notice, &who, original.as_ref())
            .await
            .map_err(|e| (e, at))?;
        Ok(Delivery::Delivered {
            audit: Some((
                format!("{}.escalation_posted", self.api.name()),
                json!({
                    conv_key: posted.conversation, id_key: posted.message_id,
                    "mentioned": who, "attempt": attempt,
                }),
            )),
            message: None,
        })
    }

    /// The outcome notice to the human the agent acted for.
    async fn notify(&self, item: &OutboxItem, attempt: i64) -> Result<Delivery, Failure> {
        let a = self.load(item).await?;
        let Some(to) = a.on_behalf_of.clone().filter(|_| a.status.is_final()) else {
            return Ok(nothing());
        };
        // Read at delivery: the rule's wish as the policy says it now.
        let wanted = self.app.policy().notifies_on_behalf_of(&a.policy.rule);
        if !wanted {
            return Ok(nothing());
        }
        let notice = OutcomeNotice::new(&a, self.api.full_text_command());
        let at = json!({ "to": to });
        let sent = self
            .api
            .direct(&to, &a, &notice)
            .await
            .map_err(|e| (e, at.clone()))?;
        let conv_key = self.api.keys().0;
        let (kind, data) = match sent {
            Some(m) => (
                "notified",
                json!({ "to": to, conv_key: m.conversation, "status": a.status, "attempt": attempt }),
            ),
            None => (
                "not_notified",
                json!({ "to": to, "reason": "no chat account found for this person", "status": a.status }),
            ),
        };
        Ok(Delivery::Delivered {
            audit: Some((format!("{}.{kind}", self.api.name()), data)),
            message: None,
        })
    }

    /// The request a row is about.
    async fn load(&self, item: &OutboxItem) -> Result<Approval, Failure> {
        let missing = |what: String| (DeliveryError::permanent(what), json!({}));
        let Some(id) = item.request_uuid() else {
            return Err(missing("the outbox row names no request".into()));
        };
        match requests::get(&self.app.store, id).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(missing(format!("request {id} does not exist"))),
            Err(e) => Err((e.into(), json!({}))),
        }
    }

    /// The request's message on this channel, if it was posted.
    async fn posted(&self, a: &Approval) -> Result<Option<ChatMessage>, Failure> {
        chat_messages::find(&self.app.store, a.id, self.api.name())
            .await
            .map_err(|e| (e.into(), json!({})))
    }

    /// A failure as the outbox records it, audited in one shape.
    fn failure(&self, e: DeliveryError, attempt: i64, mut data: Value) -> Delivery {
        let kind = format!("{}.failed", self.api.name());
        data["error"] = json!(e.message());
        data["attempt"] = json!(attempt);
        match e {
            DeliveryError::Transient {
                message,
                retry_after,
                status,
            } => {
                data["will_retry"] = json!(true);
                data["retry_after_seconds"] = json!(retry_after.map(|d| d.as_secs()));
                data["status"] = json!(status);
                Delivery::Retry {
                    audit: Some((kind, data)),
                    error: message,
                    after: retry_after,
                }
            }
            DeliveryError::Permanent { message, status } => {
                data["will_retry"] = json!(false);
                data["status"] = json!(status);
                Delivery::Failed {
                    audit: Some((kind, data)),
                    error: message,
                }
            }
            DeliveryError::Store(message) => Delivery::Retry {
                error: message,
                after: None,
                audit: None,
            },
        }
    }
}

fn nothing() -> Delivery {
    Delivery::Delivered {
        audit: None,
        message: None,
    }
}
