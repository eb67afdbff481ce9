//! The webhook sink: each published head POSTed as a callback webhook is,
//! through the same deliverer (src/webhook.rs): the same HMAC headers and
//! secret, the destination judged again at every attempt, the vetting
//! resolver, no redirects, and the same retry-or-give-up rule.

use serde_json::json;

use crate::outbox::{Deliverer, Delivery, OutboxItem};
use crate::webhook::WebhookDeliverer;

pub struct WebhookSink {
    pub inner: WebhookDeliverer,
    /// `COUNTERSIGN_AUDIT_CHECKPOINT_WEBHOOK`, judged at start.
    pub url: String,
}

#[async_trait::async_trait]
impl Deliverer for WebhookSink {
    async fn deliver(&self, item: &OutboxItem) -> Delivery {
        let Some(c) = crate::store::checkpoint_sinks::parse(&item.payload_json()) else {
            return super::malformed();
        };
        // The body is the checkpoint exactly: a receiver appends it as a line.
        let as_webhook = OutboxItem {
            payload: json!({ "url": self.url, "body": c }).to_string(),
            ..item.clone()
        };
        quiet(self.inner.deliver(&as_webhook).await)
    }
}

/// Drops the deliverer's per-attempt audit events: each would move the
/// head and so make a checkpoint of its own. A give-up is still audited by
/// the outbox (`delivery.given_up`), with the error.
fn quiet(d: Delivery) -> Delivery {
    match d {
        Delivery::Delivered { message, .. } => Delivery::Delivered {
            audit: None,
            message,
        },
        Delivery::Retry { error, after, .. } => Delivery::Retry {
            error,
            after,
            audit: None,
        },
        Delivery::Failed { error, .. } => Delivery::Failed { error, audit: None },
    }
}
