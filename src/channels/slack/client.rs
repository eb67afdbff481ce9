//! The Slack Web API, through slack-morphism's client, reduced to the calls
//! Countersign makes and to one question about every failure: is it worth
//! trying again?
//!
//! Requests use slack-morphism's typed request bodies; answers are read
//! into only the fields we use. A post Slack accepted must never look
//! failed because some field we ignore did not parse: the outbox would
//! retry it and the message would appear twice.
//!
//! Every call has a deadline (the hyper client has none of its own). The
//! bot token goes only to the configured API URL, never to a
//! `response_url`, and never into a log or an error message.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use url::Url;

use crate::config::Secret;

/// Why a call did not succeed, in the terms the outbox needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Slack is down, slow, rate-limiting us or said the error is
    /// temporary: try again, no sooner than `retry_after` if it said so.
    Temporary {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (bad token, unknown channel, …).
    Permanent { message: String },
}

impl ApiError {
    pub fn message(&self) -> &str {
        match self {
            ApiError::Temporary { message, .. } | ApiError::Permanent { message } => message,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// `ok: false` error codes that Slack documents as transient.
const TEMPORARY_CODES: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "timeout",
];

/// What `users.info` tells us about a person.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub profile: UserProfile,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserProfile {
    /// Present only with the `users:read.email` scope; Slack returns only
    /// confirmed addresses.
    pub email: Option<String>,
}

#[derive(Deserialize)]
struct Posted {
    channel: String,
    ts: String,
}

#[derive(Deserialize)]
struct UserId {
    user: IdOnly,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct UserAnswer {
    user: UserInfo,
}

#[derive(Deserialize)]
struct SocketUrl {
    url: String,
}

/// Any successful answer whose content we do not need.
#[derive(Deserialize)]
struct Ack {}

/// A message sent to a `response_url`.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub response_type: &'static str,
    pub replace_original: bool,
    #[serde(flatten)]
    pub content: SlackMessageContent,
}

impl Reply {
    pub fn ephemeral(content: SlackMessageContent) -> Self {
        Self {
            response_type: "ephemeral",
            replace_original: false,
            content,
        }
    }
}

#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<SlackClientHyperHttpsConnector>>,
    token: SlackApiToken,
    timeout: Duration,
}

impl SlackApi {
    /// `api_url` is the Web API base (`https://slack.com/api`, or a local
    /// fake in tests: plain HTTP and HTTP/1 are allowed for that).
    pub fn new(api_url: &str, token: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        let ring = || rustls::crypto::ring::default_provider();
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(ring())
        {
            Ok(b) => b,
            // A plain-HTTP API URL needs no roots; anything else does.
            Err(_) if api_url.starts_with("http://") => {
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(ring()))
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
            Err(e) => anyhow::bail!(
                "Slack: no TLS root certificates found ({e}); install the system CA certificates"
            ),
        };
        let connector = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector = SlackClientHyperConnector::with_connector(connector)
            .with_slack_api_url(api_url.trim_end_matches('/'));
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(token.expose().to_string().into()),
            timeout,
        })
    }

    async fn post<RQ, RS>(&self, method: &str, body: &RQ) -> Result<RS, ApiError>
    where
        RQ: Serialize + Send + Sync,
        RS: for<'de> Deserialize<'de> + Send,
    {
        let session = self.client.open_session(&self.token);
        let call = session.http_session_api.http_post(method, body, None);
        self.deadline(method, call).await
    }

    async fn deadline<RS>(
        &self,
        method: &str,
        call: impl Future<Output = Result<RS, SlackClientError>>,
    ) -> Result<RS, ApiError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(classify(method, e)),
            Err(_) => Err(ApiError::Temporary {
                message: format!("{method}: Slack did not answer within {:?}", self.timeout),
                retry_after: None,
            }),
        }
    }

    /// Posts a message; returns the channel id and the message `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        content: SlackMessageContent,
    ) -> Result<(String, String), ApiError> {
        let req = SlackApiChatPostMessageRequest::new(channel.into(), content)
            .with_link_names(false)
            .with_parse("none".into())
            .with_unfurl_links(false)
            .with_unfurl_media(false);
        let p: Posted = self.post("chat.postMessage", &req).await?;
        Ok((p.channel, p.ts))
    }

    /// Posts in the thread of message `ts`.
    pub async fn post_reply(
        &self,
        channel: &str,
        ts: &str,
        content: SlackMessageContent,
    ) -> Result<(), ApiError> {
        let req = SlackApiChatPostMessageRequest::new(channel.into(), content)
            .with_thread_ts(ts.into())
            .with_link_names(false)
            .with_parse("none".into())
            .with_unfurl_links(false)
            .with_unfurl_media(false);
        let _: Posted = self.post("chat.postMessage", &req).await?;
        Ok(())
    }

    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        content: SlackMessageContent,
    ) -> Result<(), ApiError> {
        let req = SlackApiChatUpdateRequest::new(channel.into(), content, ts.into())
            .with_link_names(false)
            .with_parse("none".into());
        let _: Ack = self.post("chat.update", &req).await?;
        Ok(())
    }

    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        content: SlackMessageContent,
    ) -> Result<(), ApiError> {
        let req = SlackApiChatPostEphemeralRequest::new(channel.into(), user.into(), content)
            .with_link_names(false)
            .with_parse("none".into());
        let _: Ack = self.post("chat.postEphemeral", &req).await?;
        Ok(())
    }

    pub async fn open_view(&self, trigger_id: &str, view: SlackView) -> Result<(), ApiError> {
        let req = SlackApiViewsOpenRequest::new(trigger_id.into(), view);
        let _: Ack = self.post("views.open", &req).await?;
        Ok(())
    }

    pub async fn user_info(&self, user: &str) -> Result<UserInfo, ApiError> {
        let session = self.client.open_session(&self.token);
        let params = vec![("user", Some(user))];
        let call =
            session
                .http_session_api
                .http_get::<UserAnswer, _, _>("users.info", &params, None);
        Ok(self.deadline("users.info", call).await?.user)
    }

    /// The Slack user with this confirmed e-mail address, if any
    /// (`users.lookupByEmail`, scope `users:read.email`).
    pub async fn lookup_by_email(&self, email: &str) -> Result<Option<String>, ApiError> {
        let session = self.client.open_session(&self.token);
        let params = vec![("email", Some(email))];
        let call =
            session
                .http_session_api
                .http_get::<UserId, _, _>("users.lookupByEmail", &params, None);
        match self.deadline("users.lookupByEmail", call).await {
            Ok(u) => Ok(Some(u.user.id)),
            Err(ApiError::Permanent { message }) if message.ends_with("users_not_found") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A Socket Mode WebSocket URL (`apps.connections.open`), asked for
    /// with the app-level token rather than the bot token. The URL carries
    /// a one-time ticket: the caller does not log it.
    pub async fn open_socket_url(&self, app_token: &Secret) -> Result<String, ApiError> {
        let token = SlackApiToken::new(app_token.expose().to_string().into());
        let session = self.client.open_session(&token);
        let body = serde_json::json!({});
        let call = session.http_session_api.http_post::<_, SocketUrl>(
            "apps.connections.open",
            &body,
            None,
        );
        Ok(self.deadline("apps.connections.open", call).await?.url)
    }

    /// Answers through a `response_url` (slash commands, clicks). The URL
    /// came in a signed request; the bot token is not sent to it.
    pub async fn respond(&self, response_url: &str, reply: &Reply) -> Result<(), ApiError> {
        let url: Url = response_url.parse().map_err(|_| ApiError::Permanent {
            message: "response_url is not a URL".into(),
        })?;
        let span = tracing::debug_span!("slack response_url");
        let context = SlackClientApiCallContext {
            rate_control_params: None,
            token: None,
            tracing_span: &span,
            is_sensitive_url: true,
        };
        let call = self
            .client
            .http_api
            .connector
            .http_post_uri::<_, Ack>(url, reply, context);
        self.deadline("response_url", call).await.map(|_| ())
    }
}

/// Sorts a slack-morphism error into retry-or-not, with a short message
/// that names no secret and quotes no response body.
pub fn classify(method: &str, e: SlackClientError) -> ApiError {
    let temporary = |message: String, retry_after| ApiError::Temporary {
        message,
        retry_after,
    };
    match e {
        SlackClientError::RateLimitError(r) => temporary(
            format!("{method}: rate limited by Slack (429)"),
            r.retry_after,
        ),
        SlackClientError::HttpError(h) => {
            let status = h.status_code;
            let message = format!("{method}: Slack answered HTTP {}", status.as_u16());
            if status.is_server_error() || status.as_u16() == 408 {
                temporary(message, None)
            } else {
                ApiError::Permanent { message }
            }
        }
        SlackClientError::ApiError(a) => {
            let message = format!("{method}: Slack error {}", a.code);
            if TEMPORARY_CODES.contains(&a.code.as_str()) {
                temporary(message, None)
            } else {
                ApiError::Permanent { message }
            }
        }
        SlackClientError::ProtocolError(_) => {
            temporary(format!("{method}: Slack's answer could not be read"), None)
        }
        _ => temporary(format!("{method}: could not reach Slack"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slack_morphism::errors::*;

    #[test]
    fn a_client_for_the_real_slack_builds_on_ring_alone() {
        // aws-lc in the build would make this panic (two TLS providers).
        let api = SlackApi::new(
            "https://slack.com/api",
            &Secret::new("xoxb-x"),
            Duration::from_secs(1),
        );
        assert!(api.is_ok(), "{:?}", api.err());
    }

    #[test]
    fn rate_limits_server_errors_and_transient_codes_are_retried() {
        let e = classify(
            "chat.postMessage",
            SlackClientError::RateLimitError(
                SlackRateLimitError::new().with_retry_after(Duration::from_secs(7)),
            ),
        );
        assert_eq!(
            e,
            ApiError::Temporary {
                message: "chat.postMessage: rate limited by Slack (429)".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let e = classify(
            "x",
            SlackClientError::HttpError(SlackClientHttpError::new(http::StatusCode::BAD_GATEWAY)),
        );
        assert!(matches!(e, ApiError::Temporary { .. }));
        let e = classify(
            "x",
            SlackClientError::ApiError(SlackClientApiError::new("internal_error".into())),
        );
        assert!(matches!(e, ApiError::Temporary { .. }));
    }

    #[test]
    fn configuration_errors_are_permanent() {
        for code in ["channel_not_found", "invalid_auth", "not_in_channel"] {
            let e = classify(
                "chat.postMessage",
                SlackClientError::ApiError(SlackClientApiError::new(code.into())),
            );
            assert!(matches!(e, ApiError::Permanent { .. }), "{code}");
        }
        let e = classify(
            "x",
            SlackClientError::HttpError(SlackClientHttpError::new(http::StatusCode::NOT_FOUND)),
        );
        assert!(matches!(e, ApiError::Permanent { .. }));
    }
}
