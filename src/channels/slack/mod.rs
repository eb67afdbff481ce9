//! The Slack channel: approvers decide where they already work.
//!
//! - [`delivery`]: Slack's side of the kit's outbox handlers, which post a
//!   request needing approval and update that message on every change;
//! - [`interactions`]: `POST /slack/interactions`, the Approve / Deny
//!   buttons and the deny modal;
//! - [`commands`]: `POST /slack/commands`, the `/audit` slash command;
//! - [`socket_mode`]: the same interactions and commands over a WebSocket
//!   the service opens (`COUNTERSIGN_SLACK_APP_TOKEN`), for a service with
//!   no public URL;
//! - [`identity`]: Slack user → principal;
//! - [`render`] and [`limits`]: Block Kit from templates, escaped and
//!   within Slack's limits;
//! - [`client`]: the Web API through slack-morphism.
//!
//! What is not Slack's own (identity resolution, delivery rules, "decide
//! and explain", the audit answer, the view of a request) is the kit's
//! ([`crate::channels::kit`]); decisions go through `App::decide` like
//! every other channel's: nothing here judges whether a click counts.

pub mod client;
pub mod commands;
pub mod delivery;
pub mod identity;
pub mod interactions;
pub mod limits;
pub mod render;
pub mod socket_mode;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Extension, Router};
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::{
    SlackEventSignatureVerifier, SlackEventSignatureVerifierError,
};

use crate::error::{AppError, AppResult};
use crate::outbox::Outbox;
use crate::service::App;
use client::{Reply, SlackApi};
use identity::Identities;
use render::Templates;

/// The channel's name in outbox kinds, lanes, decisions and chat_messages.
pub const CHANNEL: &str = "slack";

/// How long a Web API call may take before it counts as a timeout.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Slack wants an answer within 3 seconds; what takes longer finishes in
/// the background and answers through the API or `response_url`.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(2500);

pub struct Slack {
    pub app: App,
    pub api: SlackApi,
    pub templates: Templates,
    pub identities: Identities,
    /// None in a Socket Mode-only setup (no signing secret): the HTTP
    /// endpoints are then not served.
    verifier: Option<SlackEventSignatureVerifier>,
}

/// Registers the outbox handlers and returns the routes, and the Socket
/// Mode listener when an app token is set (the caller runs it). Fails,
/// and so stops the service at start, on what would otherwise fail at the
/// first click: no way to authenticate Slack (neither a signing secret nor
/// an app token), an app token that is not one, an API URL that is not a
/// URL, a bad template.
pub async fn install(
    app: &App,
    outbox: &mut Outbox,
) -> anyhow::Result<(Router<App>, Option<socket_mode::SocketMode>)> {
    let settings = &app.settings.slack;
    let token = settings
        .bot_token
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("Slack needs COUNTERSIGN_SLACK_BOT_TOKEN"))?;
    if settings.signing_secret.is_none() && settings.app_token.is_none() {
        anyhow::bail!(
            "Slack needs COUNTERSIGN_SLACK_SIGNING_SECRET (clicks and commands over HTTP) or COUNTERSIGN_SLACK_APP_TOKEN (Socket Mode) to check that clicks and commands come from Slack"
        );
    }
    if let Some(app_token) = &settings.app_token
        && !app_token.expose().starts_with("xapp-")
    {
        // The value itself is a secret: not quoted.
        anyhow::bail!(
            "COUNTERSIGN_SLACK_APP_TOKEN must be an app-level token (it starts with xapp-; create one with the connections:write scope under Basic Information → App-Level Tokens)"
        );
    }
    url::Url::parse(&settings.api_url).map_err(|e| {
        anyhow::anyhow!(
            "COUNTERSIGN_SLACK_API_URL '{}' is not a URL: {e}",
            settings.api_url
        )
    })?;
    if settings.channel.is_none() {
        tracing::warn!(
            "COUNTERSIGN_SLACK_CHANNEL is not set: only requests whose policy rule names a slack_channel will reach Slack"
        );
    }
    let api = SlackApi::new(&settings.api_url, token, API_TIMEOUT)?;
    let templates = Templates::load(app.settings.templates_dir.as_deref())?;
    let slack = Arc::new(Slack {
        app: app.clone(),
        identities: Identities::new(app.clone(), api.clone()),
        api,
        templates,
        verifier: settings
            .signing_secret
            .as_ref()
            .map(|s| SlackEventSignatureVerifier::new(&s.expose().to_string().into())),
    });
    crate::channels::kit::delivery::register(outbox, app, slack.clone());
    let socket = settings
        .app_token
        .clone()
        .map(|t| socket_mode::SocketMode::new(slack.clone(), t));
    let mut routes = Router::new();
    if slack.verifier.is_some() {
        routes = routes
            .route("/slack/interactions", post(interactions::handle))
            .route("/slack/commands", post(commands::handle));
    }
    Ok((routes.layer(Extension(slack)), socket))
}

impl Slack {
    /// Checks Slack's request signature before anything in the body is
    /// read: `v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))`, with
    /// the timestamp at most 5 minutes off (replays). Returns the body.
    pub fn verify<'b>(&self, headers: &HeaderMap, body: &'b [u8]) -> AppResult<&'b str> {
        let Some(verifier) = &self.verifier else {
            return Err(AppError::Unauthorized(
                "no COUNTERSIGN_SLACK_SIGNING_SECRET is set, so no HTTP request can be checked"
                    .into(),
            ));
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    AppError::Unauthorized(format!(
                        "missing {name} header: only Slack may call this endpoint"
                    ))
                })
        };
        let signature = header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER)?;
        let timestamp = header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP)?;
        let body = std::str::from_utf8(body)
            .map_err(|_| AppError::Unauthorized("the request signature does not match".into()))?;
        match verifier.verify(signature, body, timestamp) {
            Ok(()) => Ok(body),
            Err(SlackEventSignatureVerifierError::IncorrectOrExpiredTimestampError(_)) => Err(
                AppError::Unauthorized("the request timestamp is more than 5 minutes off".into()),
            ),
            Err(_) => Err(AppError::Unauthorized(
                "the request signature does not match".into(),
            )),
        }
    }

    /// Tells one person something only they see: `chat.postEphemeral` in
    /// the channel they clicked in, else through the `response_url`.
    pub async fn tell(&self, to: &Recipient, text: &str) {
        let content = SlackMessageContent::new().with_text(limits::escape_clip(text, 3000));
        if let Some(channel) = &to.channel {
            match self
                .api
                .post_ephemeral(channel, &to.user, content.clone())
                .await
            {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "chat.postEphemeral failed"),
            }
        }
        if let Some(url) = &to.response_url
            && let Err(e) = self.api.respond(url, &Reply::ephemeral(content)).await
        {
            tracing::warn!(error = %e, "answering through response_url failed");
        }
    }
}

/// The person who acted, and where to answer them.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub team: String,
    pub user: String,
    pub channel: Option<String>,
    pub response_url: Option<String>,
}

/// Runs `work` in its own task and waits for it up to [`ANSWER_WITHIN`].
/// Past that, the caller answers Slack anyway and the work carries on.
pub async fn within_budget(work: impl Future<Output = ()> + Send + 'static) {
    let task = tokio::spawn(work);
    if tokio::time::timeout(ANSWER_WITHIN, task).await.is_err() {
        tracing::info!("Slack work outlasted the answer window; finishing in the background");
    }
}

/// The value of one field of an `application/x-www-form-urlencoded` body.
pub fn form_field(body: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
