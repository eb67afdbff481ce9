//! What the bot does with each authenticated activity:
//!
//! - `invoke` / `adaptiveCard/action`: an Approve or Deny click. The clicker
//!   is mapped to a principal, `App::decide` applies the rules, and the
//!   invoke response carries the updated card (or the same card with a
//!   line saying why the click did not count). Teams shows that card to
//!   the clicker; the outbox updates the posted card for everyone.
//! - `conversationUpdate` / `installationUpdate`: the bot was added to (or
//!   removed from) a team, channel or chat; the reference is captured.
//! - `message`: `audit …`, answered with a card in a reply.
//!
//! Each kind has its file: [`click`], [`membership`], [`message`]; who the
//! sender is comes from [`super::identity`], through the kit.

mod click;
mod membership;
mod message;

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Teams;
use super::card::{CONTENT_TYPE, Tone};
use crate::error::{AppError, AppResult};
use crate::service::App;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    #[serde(default)]
    pub id: String,
    pub name: Option<String>,
    pub aad_object_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRef {
    pub id: String,
    pub conversation_type: Option<String>,
    pub tenant_id: Option<String>,
    pub name: Option<String>,
}

/// The parts of a Bot Framework activity the bot reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub service_url: Option<String>,
    pub channel_id: Option<String>,
    pub from: Option<Account>,
    pub recipient: Option<Account>,
    pub conversation: Option<ConversationRef>,
    pub text: Option<String>,
    #[serde(default)]
    pub entities: Vec<Value>,
    pub value: Option<Value>,
    pub channel_data: Option<Value>,
    #[serde(default)]
    pub members_added: Vec<Account>,
    #[serde(default)]
    pub members_removed: Vec<Account>,
    pub action: Option<String>,
}

impl Activity {
    /// Reads an (authenticated) body; the fuzz targets (`fuzz/`) call it.
    /// Strict: an activity with a key twice (two `payload_sha256`s, say)
    /// could show one value to a reader of the bytes and act on another.
    pub fn parse(body: &[u8]) -> AppResult<Self> {
        crate::json::from_slice_strict(body).map_err(|e| {
            AppError::BadRequest(format!("the body is not a Bot Framework activity: {e}"))
        })
    }

    pub(super) fn tenant(&self) -> Option<&str> {
        self.conversation
            .as_ref()
            .and_then(|c| c.tenant_id.as_deref())
            .or_else(|| {
                self.channel_data
                    .as_ref()?
                    .get("tenant")?
                    .get("id")?
                    .as_str()
            })
    }

    pub(super) fn channel_data_str(&self, path: &[&str]) -> Option<String> {
        let mut v = self.channel_data.as_ref()?;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str().map(str::to_string)
    }

    pub(super) fn is_bot(&self, account: &Account) -> bool {
        self.recipient
            .as_ref()
            .is_some_and(|r| !r.id.is_empty() && r.id == account.id)
    }
}

/// `POST /teams/messages`.
pub async fn handle(
    teams: Arc<Teams>,
    app: App,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let verified = teams.verifier.verify(authorization).await?;
    let activity = Activity::parse(&body)?;
    verified.check_service_url(activity.service_url.as_deref())?;
    if activity.channel_id.as_deref() != Some(super::auth::CHANNEL) {
        return Err(AppError::Unauthorized(
            "Bot Framework token refused: the activity is not from Microsoft Teams".into(),
        ));
    }
    if let Some(tenant) = &teams.tenant
        && activity.tenant() != Some(tenant.as_str())
    {
        return Err(AppError::Forbidden(
            "this bot serves another Microsoft 365 organisation".into(),
        ));
    }
    match activity.kind.as_str() {
        "invoke" if activity.name.as_deref() == Some("adaptiveCard/action") => {
            let card = click::card_action(&teams, &app, &activity).await?;
            Ok(Json(json!({
                "statusCode": 200,
                "type": CONTENT_TYPE,
                "value": card,
            }))
            .into_response())
        }
        "conversationUpdate" | "installationUpdate" => {
            membership::membership(&app, &activity).await?;
            Ok(axum::http::StatusCode::OK.into_response())
        }
        "message" => {
            let teams = teams.clone();
            let app = app.clone();
            // Answered in a reply, not in this response (the Bot Framework
            // ignores message responses); the HTTP call returns at once.
            tokio::spawn(async move { message::answer_message(&teams, &app, &activity).await });
            Ok(axum::http::StatusCode::OK.into_response())
        }
        _ => Ok(axum::http::StatusCode::OK.into_response()),
    }
}

/// A short card for the sender: a title and a sentence.
fn notice(teams: &Teams, tone: Tone, title: &str, text: &str) -> AppResult<Value> {
    teams
        .templates
        .notice_card(tone, title, text)
        .map_err(AppError::Internal)
}

/// The command text of a message: the bot's @mention removed, other
/// mentions replaced by `@mentionN` tokens (returned in order), markup
/// stripped.
pub fn command_text(a: &Activity) -> (String, Vec<Account>) {
    let mut text = a.text.clone().unwrap_or_default();
    let mut others = Vec::new();
    for e in &a.entities {
        if e.get("type").and_then(Value::as_str) != Some("mention") {
            continue;
        }
        let (Some(t), Some(m)) = (
            e.get("text").and_then(Value::as_str),
            e.get("mentioned")
                .and_then(|m| serde_json::from_value::<Account>(m.clone()).ok()),
        ) else {
            continue;
        };
        if a.is_bot(&m) {
            text = text.replacen(t, " ", 1);
        } else {
            text = text.replacen(t, &format!(" @mention{} ", others.len()), 1);
            others.push(m);
        }
    }
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.replace("&nbsp;", " ").chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    let plain = plain
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    (
        plain.split_whitespace().collect::<Vec<_>>().join(" "),
        others,
    )
}

/// What follows `audit` in a message's command text; `None` for any other
/// message.
pub fn audit_words(text: &str) -> Option<&str> {
    match text.split_once(' ') {
        Some((first, rest)) if first.eq_ignore_ascii_case("audit") => Some(rest),
        None if text.eq_ignore_ascii_case("audit") => Some(""),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bot_mention_is_removed_and_other_mentions_become_tokens() {
        let a: Activity = serde_json::from_value(json!({
            "type": "message",
            "text": "<at>Countersign</at>&nbsp;audit <at>Bob Smith</at> page:2",
            "recipient": { "id": "28:bot" },
            "entities": [
                { "type": "mention", "text": "<at>Countersign</at>", "mentioned": { "id": "28:bot", "name": "Countersign" } },
                { "type": "mention", "text": "<at>Bob Smith</at>", "mentioned": { "id": "29:bob", "name": "Bob Smith" } },
                { "type": "clientInfo", "locale": "en-US" }
            ]
        }))
        .unwrap();
        let (text, others) = command_text(&a);
        assert_eq!(text, "audit @mention0 page:2");
        assert_eq!(others[0].id, "29:bob");
    }
}
