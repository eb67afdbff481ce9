//! The `/audit` slash command, from `POST /slack/commands` (signed) or
//! over Socket Mode ([`super::socket_mode`]); both call [`dispatch`].
//!
//! The kit's flow answers it ([`crate::channels::kit::audit_answer`]: who
//! asks, the grammar, a mention resolved only for an auditor, the query
//! and its rules); this module reads Slack's form, turns Slack's mentions
//! and e-mail links into what the grammar expects, and renders the answer
//! as ephemeral Block Kit.
//!
//! The answer goes straight back (in the HTTP response, or in the
//! envelope's acknowledgement) when it is ready within
//! [`super::ANSWER_WITHIN`]; otherwise Slack gets a short acknowledgement
//! and the answer follows through the `response_url`.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use slack_morphism::prelude::*;
use tokio::sync::oneshot;

use super::client::Reply;
use super::identity::mention_user_id;
use super::limits::escape_clip;
use super::render::SlackNames;
use super::{ANSWER_WITHIN, Recipient, Slack, form_field};
use crate::channels::kit::{audit_answer, login};
use crate::domain::audit_command::{self, AuditCommand, PersonRef};
use crate::error::{AppError, AppResult};

pub async fn handle(
    Extension(slack): Extension<Arc<Slack>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<Response> {
    let body = slack.verify(&headers, &body)?;
    // Slack's periodic certificate check of the command URL.
    if form_field(body, "ssl_check").as_deref() == Some("1") {
        return Ok(StatusCode::OK.into_response());
    }
    let command = SlashCommand {
        team_id: form_field(body, "team_id"),
        user_id: form_field(body, "user_id"),
        channel_id: form_field(body, "channel_id"),
        response_url: form_field(body, "response_url"),
        text: form_field(body, "text"),
    };
    Ok(Json(dispatch(slack, command).await?).into_response())
}

/// The fields of a slash command that Countersign reads: form fields over
/// HTTP, a JSON object in a Socket Mode envelope (same names).
#[derive(Debug, Default, Deserialize)]
pub struct SlashCommand {
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub channel_id: Option<String>,
    pub response_url: Option<String>,
    pub text: Option<String>,
}

/// Answers one `/audit` from an authenticated transport (the signed HTTP
/// endpoint, or a Socket Mode envelope). The answer is what Slack shows at
/// once: the HTTP response body, or the envelope acknowledgement's payload.
pub async fn dispatch(slack: Arc<Slack>, command: SlashCommand) -> AppResult<Reply> {
    let field = |name: &str, value: Option<String>| {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| AppError::BadRequest(format!("the command has no {name}")))
    };
    let to = Recipient {
        team: field("team_id", command.team_id)?,
        user: field("user_id", command.user_id)?,
        channel: command.channel_id,
        response_url: command.response_url,
    };
    let text = command.text.unwrap_or_default();

    let (tx, mut rx) = oneshot::channel::<SlackMessageContent>();
    let worker = slack.clone();
    let late_to = to.clone();
    tokio::spawn(async move {
        let content = answer(&worker, &late_to, &text).await;
        // The caller has already acknowledged: answer through response_url.
        if let Err(content) = tx.send(content)
            && let Some(url) = &late_to.response_url
            && let Err(e) = worker.api.respond(url, &Reply::ephemeral(content)).await
        {
            tracing::warn!(error = %e, "answering /audit through response_url failed");
        }
    });
    let content = match tokio::time::timeout(ANSWER_WITHIN, &mut rx).await {
        Ok(Ok(content)) => content,
        Ok(Err(_)) => plain("Countersign could not answer; the error has been logged."),
        Err(_) => {
            // Closing first means the worker either already sent (and we
            // use it) or will find the channel closed and use response_url.
            rx.close();
            rx.try_recv()
                .unwrap_or_else(|_| plain("Looking that up… the answer will appear here shortly."))
        }
    };
    Ok(Reply::ephemeral(content))
}

/// The `/audit` answer for `text`, as `to` may see it.
pub async fn answer(slack: &Slack, to: &Recipient, text: &str) -> SlackMessageContent {
    let who = slack.identities.resolve(&to.team, &to.user).await;
    if login::is_login(text) {
        return match login::link(&slack.app, who).await {
            // The URL is ours (base64url token); the rest is our text.
            Ok(l) => SlackMessageContent::new().with_text(format!(
                "<{}|Sign in to Countersign>: a personal link, valid for {} and usable once. Do not share it.",
                l.url, l.valid_for
            )),
            Err(why) => plain(&why),
        };
    }
    let text = unlink_emails(text);
    let query = without_page(&text);
    let mention = |m: String| async move {
        let user = mention_user_id(&m)?;
        slack.identities.resolve(&to.team, user).await.ok()
    };
    match audit_answer::answer(&slack.app, who, &text, mention).await {
        Ok(a) => slack
            .templates
            .audit(&a.answer, a.page, &query, &SlackNames::new())
            .unwrap_or_else(|e| {
                tracing::error!(error = %format!("{e:#}"), "rendering an /audit answer failed");
                plain("Countersign could not show the answer; the error has been logged.")
            }),
        Err(no) => plain(&no.text),
    }
}

/// Every parse a signed `/audit` body goes through (its fields, Slack's
/// e-mail links, the grammar, a mention) with no Slack or database; the
/// fuzz targets (`fuzz/`) call it. Returns the grammar's answer and the
/// query a "next page" button would carry.
pub fn parse_command(
    body: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<(Result<audit_command::ParsedAudit, String>, String)> {
    for name in ["team_id", "user_id"] {
        form_field(body, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| AppError::BadRequest(format!("the command has no {name}")))?;
    }
    let text = unlink_emails(&form_field(body, "text").unwrap_or_default());
    let parsed = audit_command::parse(&text, now);
    if let Ok(audit_command::ParsedAudit {
        command: AuditCommand::Person(PersonRef::Mention(m)),
        ..
    }) = &parsed
    {
        mention_user_id(m);
    }
    Ok((parsed, without_page(&text)))
}

/// The value of a "next page" button; `None` for one that is not ours.
pub fn parse_page_button(value: &str) -> Option<(String, u32)> {
    crate::json::from_slice_strict::<PageRequest>(value.as_bytes())
        .ok()
        .map(|r| (r.q, r.p))
}

#[derive(Deserialize)]
struct PageRequest {
    q: String,
    p: u32,
}

/// The "Next page" button of an answer: replaces it with the next page.
pub async fn next_page(slack: &Slack, to: &Recipient, value: &str) {
    let Some((q, p)) = parse_page_button(value) else {
        return;
    };
    let content = answer(slack, to, &format!("{q} page:{p}")).await;
    match &to.response_url {
        Some(url) => {
            let reply = Reply {
                response_type: "ephemeral",
                replace_original: true,
                content,
            };
            if let Err(e) = slack.api.respond(url, &reply).await {
                tracing::warn!(error = %e, "answering /audit through response_url failed");
            }
        }
        None => {
            if let Some(text) = content.text {
                slack.tell(to, &text).await;
            }
        }
    }
}

fn plain(text: &str) -> SlackMessageContent {
    SlackMessageContent::new().with_text(escape_clip(text, 3000))
}

fn without_page(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| !w.starts_with("page:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Slack may turn an address in command text into a link
/// (`user:<mailto:a@x.io|a@x.io>`); the grammar wants the address.
fn unlink_emails(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<mailto:") {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        out.push_str(&rest[..start]);
        let inner = &rest[start + "<mailto:".len()..start + len];
        out.push_str(inner.split('|').next().unwrap_or(inner));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_slack_turned_into_links_are_read_as_addresses() {
        assert_eq!(
            unlink_emails("user:<mailto:alice@example.com|alice@example.com> page:2"),
            "user:alice@example.com page:2"
        );
        assert_eq!(unlink_emails("pending"), "pending");
        assert_eq!(unlink_emails("<mailto:a@b.io>"), "a@b.io");
    }

    #[test]
    fn the_next_page_command_drops_the_old_page() {
        assert_eq!(without_page("pending page:2"), "pending");
    }
}
