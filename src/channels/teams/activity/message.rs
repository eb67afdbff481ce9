//! `message`: `audit …` sent to the bot, answered with a card in a reply,
//! through the kit's "answer an audit command"
//! ([`crate::channels::kit::audit_answer`]); any other message gets the
//! usage. Mentions (`audit @Bob`) arrive as `@mentionN` tokens
//! ([`super::command_text`]) and are looked up only for an auditor.

use serde_json::{Value, json};

use super::super::Teams;
use super::super::card::{CONTENT_TYPE, Tone};
use super::super::identity;
use super::{Activity, audit_words, command_text, notice};
use crate::channels::kit::identity::Unresolved;
use crate::channels::kit::{audit_answer, login};
use crate::domain::audit_command;
use crate::error::{AppError, AppResult};
use crate::service::App;

/// Answers a message in a reply, in its thread.
pub async fn answer_message(teams: &Teams, app: &App, a: &Activity) {
    let card = match message_card(teams, app, a).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "answering a Teams message failed");
            let detail = e.problem()["detail"]
                .as_str()
                .unwrap_or("Something went wrong.")
                .to_string();
            match notice(teams, Tone::Warning, "Countersign", &detail) {
                Ok(c) => c,
                Err(_) => return,
            }
        }
    };
    let (Some(service_url), Some(conv)) = (a.service_url.as_deref(), a.conversation.as_ref())
    else {
        return;
    };
    let mut reply = json!({
        "type": "message",
        "attachments": [{ "contentType": CONTENT_TYPE, "content": card }],
    });
    let sent = match a.id.as_deref() {
        Some(id) => {
            reply["replyToId"] = json!(id);
            teams
                .connector
                .reply(service_url, &conv.id, id, &reply)
                .await
        }
        None => teams
            .connector
            .post(service_url, &conv.id, &reply)
            .await
            .map(drop),
    };
    if let Err(e) = sent {
        tracing::warn!(error = e.message(), "replying in Teams failed");
    }
}

async fn message_card(teams: &Teams, app: &App, a: &Activity) -> AppResult<Value> {
    let (text, mentions) = command_text(a);
    let Some(rest) = audit_words(&text) else {
        return notice(
            teams,
            Tone::Good,
            "Countersign",
            &format!(
                "I post approval cards here and answer audit questions. {}",
                audit_command::HELP
            ),
        );
    };
    let who = match a.from.as_ref() {
        Some(from) => identity::resolve(teams, a, &from.id, from.aad_object_id.as_deref()).await,
        None => Err(Unresolved::unmapped(
            "teams:AAD_OBJECT_ID",
            "the activity does not say who sent it",
        )),
    };
    if login::is_login(rest) {
        return match login::link(app, who).await {
            Ok(l) => notice(
                teams,
                Tone::Good,
                "Sign in to Countersign",
                &format!(
                    "Your personal sign-in link, valid for {} and usable once (do not share it): {}",
                    l.valid_for, l.url
                ),
            ),
            Err(why) => notice(teams, Tone::Attention, "Who are you?", &why),
        };
    }
    let mention = |m: String| async move {
        let n: usize = m.strip_prefix("@mention")?.parse().ok()?;
        let account = mentions.get(n)?;
        identity::resolve(teams, a, &account.id, account.aad_object_id.as_deref())
            .await
            .ok()
    };
    match audit_answer::answer(app, who, rest, mention).await {
        Ok(answer) => teams
            .templates
            .audit_card(&answer.answer, &format!("audit {rest}"))
            .map_err(AppError::Internal),
        Err(no) => {
            let tone = if no.refused {
                Tone::Attention
            } else {
                Tone::Warning
            };
            notice(teams, tone, no.title, &no.text)
        }
    }
}
