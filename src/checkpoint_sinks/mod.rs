//! Remote checkpoint sinks: signed chain heads leave the box through a
//! webhook, a Slack channel or a Teams conversation, besides (or instead
//! of) the file `COUNTERSIGN_AUDIT_CHECKPOINTS`.
//!
//! Everything goes through the durable outbox, and the design must not
//! loop: delivering audits events, every event makes a new head, and a new
//! head would be published again. So
//! - the [`Publisher`] looks at most once per
//!   `COUNTERSIGN_AUDIT_CHECKPOINT_INTERVAL`, and queues only when the
//!   signed head moved since it last queued (one writer job, no event);
//! - a sink holds at most one undelivered row: a newer head supersedes the
//!   one still waiting (src/store/checkpoint_sinks.rs);
//! - a delivered checkpoint writes no audit event (the checkpoint is its
//!   own record, kept by the receiver), and neither does a retry;
//! - a give-up is audited (`delivery.given_up`) as every give-up is, which
//!   moves the head once: so at most one give-up per sink per interval.
//!
//! A receiver appends each body (the same `{seq, hash, ts, signature,
//! key_id}` line the file holds) to a file of its own, which then serves
//! `countersign audit verify --checkpoints FILE`.

mod chat;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;
use crate::service::App;
use crate::store::Store;
use crate::store::checkpoint_sinks::{self as rows, Sink};

pub use chat::{SlackSink, TeamsSink};
pub use webhook::WebhookSink;

/// Queues the newest signed head for the configured sinks, once per interval.
pub struct Publisher {
    store: Store,
    sinks: Vec<Sink>,
    interval: Duration,
}

/// Registers a deliverer for each configured sink; returns the publisher
/// to run beside the outbox, or `None` when no remote sink is configured.
/// Settings were checked at load (src/config.rs); what still fails here
/// (a client that cannot be built) stops the service at start.
pub fn install(app: &App, outbox: &mut Outbox) -> anyhow::Result<Option<Publisher>> {
    let s = &app.settings;
    let cs = &s.checkpoint_sinks;
    s.check_checkpoint_sinks().map_err(anyhow::Error::msg)?;
    let mut sinks = vec![];
    if let Some(url) = &cs.webhook {
        let secret = s.webhook_secret.clone().ok_or_else(|| {
            anyhow::anyhow!("COUNTERSIGN_AUDIT_CHECKPOINT_WEBHOOK needs COUNTERSIGN_WEBHOOK_SECRET")
        })?;
        let inner = crate::webhook::WebhookDeliverer {
            client: crate::net::egress::webhook_client(&s.webhook_destinations)?,
            secret,
            destinations: s.webhook_destinations.clone(),
        };
        outbox.register(
            Sink::Webhook.kind(),
            Arc::new(WebhookSink {
                inner,
                url: url.clone(),
            }),
        );
        sinks.push(Sink::Webhook);
    }
    if let Some(channel) = &cs.slack_channel {
        outbox.register(
            Sink::Slack.kind(),
            Arc::new(SlackSink::new(&s.slack, channel.clone())?),
        );
        sinks.push(Sink::Slack);
    }
    if let Some(conversation) = &cs.teams_conversation {
        outbox.register(
            Sink::Teams.kind(),
            Arc::new(TeamsSink::new(app, conversation.clone())),
        );
        sinks.push(Sink::Teams);
    }
    Ok((!sinks.is_empty()).then(|| Publisher {
        store: app.store.clone(),
        sinks,
        interval: cs.interval,
    }))
}

impl Publisher {
    /// Runs until `shutdown`: each tick, queues the newest signed head if
    /// it is newer than the last one queued.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut queued = rows::newest_queued_seq(&self.store).await.ok().flatten();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            match self.publish(queued).await {
                Ok(Some(seq)) => queued = Some(seq),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "queueing an audit checkpoint failed; will retry")
                }
            }
        }
    }

    async fn publish(&self, after: Option<i64>) -> crate::error::AppResult<Option<i64>> {
        // A read first, so an idle service asks the writer for nothing.
        let newest = rows::newest_signed_seq(&self.store).await?;
        if newest.is_none() || newest <= after {
            return Ok(None);
        }
        let sinks = self.sinks.clone();
        self.store
            .write(move |ctx| Box::pin(async move { rows::publish(ctx, &sinks, after).await }))
            .await
    }
}

/// What a checkpoint says, in a few plain lines for people in chat.
fn describe(c: &crate::store::checkpoints::Checkpoint) -> String {
    format!(
        "Audit checkpoint: event {} at {}\nhash {}\nsigned by key {}\nsignature {}",
        c.seq, c.ts, c.hash, c.key_id, c.signature
    )
}

/// A row whose payload is not a checkpoint will never deliver.
fn malformed() -> crate::outbox::Delivery {
    crate::outbox::Delivery::Failed {
        error: "the checkpoint row's payload is not a checkpoint".into(),
        audit: None,
    }
}
