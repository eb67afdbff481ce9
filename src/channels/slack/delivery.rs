//! The outbox handlers: `slack.post` puts a request needing approval in its
//! channel, `slack.update` rewrites that same message after every change.
//!
//! Both run in the request's lane (`slack:<id>`), one at a time and in
//! order, so an update never overtakes its post. Both render the request
//! as it is *now*, so an update that was queued before a later change
//! still shows the latest state, and an update with a newer one queued
//! behind it is skipped. A post that already has its message reference is
//! not repeated. Failures are sorted by [`ApiError`]: temporary ones are
//! retried with backoff (no sooner than Slack's `Retry-After`), permanent
//! ones are given up at once; both are audited.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::Slack;
use super::client::ApiError;
use super::identity::slack_names;
use crate::outbox::{ChatMessageRef, Deliverer, Delivery, OutboxItem};
use crate::store::requests::{self, Approval};

pub const POST: &str = "slack.post";
pub const UPDATE: &str = "slack.update";

pub struct PostDeliverer(pub Arc<Slack>);
pub struct UpdateDeliverer(pub Arc<Slack>);

#[async_trait::async_trait]
impl Deliverer for PostDeliverer {
    async fn deliver(&self, item: &OutboxItem) -> Delivery {
        let slack = &self.0;
        let attempt = item.attempts + 1;
        let approval = match load(slack, item).await {
            Ok(a) => a,
            Err(d) => return d,
        };
        match message_ref(slack, approval.id).await {
            Ok(Some(_)) => return delivered(None, None),
            Ok(None) => {}
            Err(e) => return retry_store(e),
        }
        let Some(channel) = approval
            .slack_channel
            .clone()
            .or_else(|| slack.app.settings.slack.channel.clone())
        else {
            return failed(
                "no Slack channel: set COUNTERSIGN_SLACK_CHANNEL or the policy rule's slack_channel"
                    .into(),
                attempt,
            );
        };
        let content = match message(slack, &approval).await {
            Ok(c) => c,
            Err(e) => {
                return failed(
                    format!("rendering the Slack message failed: {e:#}"),
                    attempt,
                );
            }
        };
        match slack.api.post_message(&channel, content).await {
            Ok((channel, ts)) => delivered(
                Some((
                    "slack.posted".into(),
                    json!({ "channel": channel, "ts": ts, "attempt": attempt }),
                )),
                Some(ChatMessageRef {
                    channel: super::CHANNEL,
                    conversation: channel,
                    message_id: ts,
                    extra: None,
                }),
            ),
            Err(e) => failure(e, attempt),
        }
    }
}

#[async_trait::async_trait]
impl Deliverer for UpdateDeliverer {
    async fn deliver(&self, item: &OutboxItem) -> Delivery {
        let slack = &self.0;
        let attempt = item.attempts + 1;
        match superseded(slack, item).await {
            Ok(true) => return delivered(None, None),
            Ok(false) => {}
            Err(e) => return retry_store(e),
        }
        let approval = match load(slack, item).await {
            Ok(a) => a,
            Err(d) => return d,
        };
        let (channel, ts) = match message_ref(slack, approval.id).await {
            Ok(Some(m)) => m,
            // The post was given up; its failure is already audited.
            Ok(None) => return delivered(None, None),
            Err(e) => return retry_store(e),
        };
        let content = match message(slack, &approval).await {
            Ok(c) => c,
            Err(e) => {
                return failed(
                    format!("rendering the Slack message failed: {e:#}"),
                    attempt,
                );
            }
        };
        match slack.api.update_message(&channel, &ts, content).await {
            Ok(()) => delivered(
                Some((
                    "slack.updated".into(),
                    json!({ "channel": channel, "ts": ts, "status": approval.status, "attempt": attempt }),
                )),
                None,
            ),
            Err(e) => failure(e, attempt),
        }
    }
}

/// The request a row is about, or the outcome to record if there is none.
async fn load(slack: &Slack, item: &OutboxItem) -> Result<Approval, Delivery> {
    let Some(id) = item.request_uuid() else {
        return Err(failed("the outbox row names no request".into(), 0));
    };
    match requests::get(&slack.app.store, id).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(failed(format!("request {id} does not exist"), 0)),
        Err(e) => Err(retry_store(e)),
    }
}

/// The request's message, rendered for its current state.
async fn message(
    slack: &Slack,
    a: &Approval,
) -> anyhow::Result<slack_morphism::prelude::SlackMessageContent> {
    // Only deciders become mentions; naming the on-behalf-of person in a
    // new post would ping them about a request they cannot decide.
    let mut principals: Vec<&str> = a.approvals.iter().map(|d| d.principal.as_str()).collect();
    principals.extend(a.decided_by.as_deref());
    let names = slack_names(&slack.app.store, &principals).await?;
    slack.templates.request_message(a, &names)
}

/// Where the request's message is: (channel, ts).
async fn message_ref(slack: &Slack, id: Uuid) -> crate::error::AppResult<Option<(String, String)>> {
    let posted = crate::store::chat_messages::find(&slack.app.store, id, super::CHANNEL).await?;
    Ok(posted.map(|m| (m.conversation, m.message_id)))
}

/// Whether a later update of the same message is already queued: it will
/// show everything this one would.
async fn superseded(slack: &Slack, item: &OutboxItem) -> crate::error::AppResult<bool> {
    crate::store::outbox::later_queued(&slack.app.store, item, UPDATE).await
}

fn delivered(
    audit: Option<(String, serde_json::Value)>,
    message: Option<ChatMessageRef>,
) -> Delivery {
    Delivery::Delivered { audit, message }
}

fn failed(error: String, attempt: i64) -> Delivery {
    Delivery::Failed {
        audit: Some((
            "slack.failed".into(),
            json!({ "error": error, "attempt": attempt, "will_retry": false }),
        )),
        error,
    }
}

fn failure(e: ApiError, attempt: i64) -> Delivery {
    match e {
        ApiError::Temporary {
            message,
            retry_after,
        } => Delivery::Retry {
            audit: Some((
                "slack.failed".into(),
                json!({ "error": message, "attempt": attempt, "will_retry": true,
                        "retry_after_seconds": retry_after.map(|d| d.as_secs()) }),
            )),
            error: message,
            after: retry_after,
        },
        ApiError::Permanent { message } => failed(message, attempt),
    }
}

fn retry_store(e: crate::error::AppError) -> Delivery {
    tracing::error!(error = %e, "reading the store for a Slack delivery failed");
    Delivery::Retry {
        error: "the store could not be read".into(),
        after: None,
        audit: None,
    }
}
