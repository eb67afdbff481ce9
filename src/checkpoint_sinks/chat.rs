//! The chat sinks: a short plain-text message per published head in a
//! Slack channel (`chat.postMessage` through the Slack client) or a Teams
//! conversation (through the Bot Connector client). Failures are sorted as
//! the channels' own deliverers sort them; nothing is audited but a
//! give-up (see the module above).

use std::time::Duration;

use serde_json::json;
use slack_morphism::prelude::SlackMessageContent;

use crate::channels::slack::client::{ApiError, SlackApi};
use crate::channels::teams::connector::{CallError, Connector};
use crate::config::SlackSettings;
use crate::outbox::{Deliverer, Delivery, OutboxItem};
use crate::service::App;
use crate::store::checkpoint_sinks::parse;

/// As long as a Slack Web API call may take (the channel's own deadline).
const SLACK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SlackSink {
    api: SlackApi,
    channel: String,
}

impl SlackSink {
    pub fn new(settings: &SlackSettings, channel: String) -> anyhow::Result<Self> {
        let token = settings.bot_token.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "COUNTERSIGN_AUDIT_CHECKPOINT_SLACK_CHANNEL needs COUNTERSIGN_SLACK_BOT_TOKEN"
            )
        })?;
        Ok(Self {
            api: SlackApi::new(&settings.api_url, token, SLACK_TIMEOUT)?,
            channel,
        })
    }
}

#[async_trait::async_trait]
impl Deliverer for SlackSink {
    async fn deliver(&self, item: &OutboxItem) -> Delivery {
        let Some(c) = parse(&item.payload_json()) else {
            return super::malformed();
        };
        // Hex, digits and a timestamp: nothing in it formats, but escaped
        // all the same, as all text bound for Slack is.
        let text = crate::channels::slack::limits::escape(&super::describe(&c));
        let content = SlackMessageContent::new().with_text(text);
        match self.api.post_message(&self.channel, content).await {
            Ok(_) => Delivery::Delivered {
                audit: None,
                message: None,
            },
            Err(ApiError::Temporary {
                message,
                retry_after,
            }) => Delivery::Retry {
                error: message,
                after: retry_after,
                audit: None,
            },
            Err(ApiError::Permanent { message }) => Delivery::Failed {
                error: message,
                audit: None,
            },
        }
    }
}

pub struct TeamsSink {
    app: App,
    connector: Connector,
    conversation: String,
}

impl TeamsSink {
    pub fn new(app: &App, conversation: String) -> Self {
        Self {
            app: app.clone(),
            connector: Connector::new(app.http.clone(), &app.settings.teams),
            conversation,
        }
    }
}

#[async_trait::async_trait]
impl Deliverer for TeamsSink {
    async fn deliver(&self, item: &OutboxItem) -> Delivery {
        let Some(c) = parse(&item.payload_json()) else {
            return super::malformed();
        };
        let dest = crate::channels::teams::conversations::destination(
            &self.app.store,
            &self.app.settings.teams,
            Some(&self.conversation),
        )
        .await;
        let service_url = match dest {
            Ok(Ok((_, s))) => s,
            Ok(Err(why)) => {
                return Delivery::Failed {
                    error: why,
                    audit: None,
                };
            }
            Err(e) => {
                return Delivery::Retry {
                    error: format!("reading Teams conversations failed: {e}"),
                    after: None,
                    audit: None,
                };
            }
        };
        let activity = json!({
            "type": "message",
            "textFormat": "plain",
            "text": super::describe(&c),
        });
        match self
            .connector
            .post(&service_url, &self.conversation, &activity)
            .await
        {
            Ok(_) => Delivery::Delivered {
                audit: None,
                message: None,
            },
            Err(CallError::Retry { error, after, .. }) => Delivery::Retry {
                error,
                after,
                audit: None,
            },
            Err(CallError::Failed { error, .. }) => Delivery::Failed { error, audit: None },
        }
    }
}
