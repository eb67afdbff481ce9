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
//! Identity: an operator's link (`teams:<AAD object id>`) wins; otherwise
//! the Bot Connector's member lookup gives the person's e-mail (or UPN),
//! cached for a while. An account that maps to no one cannot decide.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Teams;
use super::card::{CONTENT_TYPE, Notice, Tone};
use super::conversations::{self, Captured};
use crate::channels::binding;
use crate::domain::audit_command::{self, AuditCommand, PersonRef};
use crate::domain::rules::Refusal;
use crate::domain::{Principal, Verdict};
use crate::error::{AppError, AppResult};
use crate::service::App;
use crate::service::approvals::DecisionInput;
use crate::store::requests;

/// How long a member lookup's answer is trusted.
const IDENTITY_TTL: Duration = Duration::from_secs(10 * 60);

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

    fn tenant(&self) -> Option<&str> {
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

    fn channel_data_str(&self, path: &[&str]) -> Option<String> {
        let mut v = self.channel_data.as_ref()?;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str().map(str::to_string)
    }

    fn is_bot(&self, account: &Account) -> bool {
        self.recipient
            .as_ref()
            .is_some_and(|r| !r.id.is_empty() && r.id == account.id)
    }
}

/// Principals found through the member lookup, by AAD object id.
#[derive(Default)]
pub struct IdentityCache {
    map: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl IdentityCache {
    fn get(&self, aad: &str) -> Option<Principal> {
        let map = self.map.lock().expect("identity cache lock");
        map.get(aad)
            .filter(|(_, at)| at.elapsed() < IDENTITY_TTL)
            .map(|(p, _)| p.clone())
    }

    fn put(&self, aad: &str, p: Principal) {
        let mut map = self.map.lock().expect("identity cache lock");
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < IDENTITY_TTL);
        }
        map.insert(aad.to_string(), (p, Instant::now()));
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
            let card = card_action(&teams, &app, &activity).await?;
            Ok(Json(json!({
                "statusCode": 200,
                "type": CONTENT_TYPE,
                "value": card,
            }))
            .into_response())
        }
        "conversationUpdate" | "installationUpdate" => {
            membership(&app, &activity).await?;
            Ok(axum::http::StatusCode::OK.into_response())
        }
        "message" => {
            let teams = teams.clone();
            let app = app.clone();
            // Answered in a reply, not in this response (the Bot Framework
            // ignores message responses); the HTTP call returns at once.
            tokio::spawn(async move { answer_message(&teams, &app, &activity).await });
            Ok(axum::http::StatusCode::OK.into_response())
        }
        _ => Ok(axum::http::StatusCode::OK.into_response()),
    }
}

fn notice(teams: &Teams, tone: Tone, title: &str, text: &str) -> AppResult<Value> {
    teams
        .templates
        .notice_card(tone, title, text)
        .map_err(AppError::Internal)
}

fn request_card(teams: &Teams, a: &requests::Approval, n: Option<Notice>) -> AppResult<Value> {
    teams
        .templates
        .request_card(a, n.as_ref())
        .map_err(AppError::Internal)
}

/// An Approve or Deny click; returns the card to answer with.
async fn card_action(teams: &Teams, app: &App, a: &Activity) -> AppResult<Value> {
    let action = a.value.as_ref().and_then(|v| v.get("action"));
    let verb = action
        .and_then(|x| x.get("verb"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let data = action.and_then(|x| x.get("data"));
    let field = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_str);
    let Some(id) = field("request_id").and_then(|s| Uuid::parse_str(s).ok()) else {
        return notice(
            teams,
            Tone::Warning,
            "Not a Countersign card",
            "This card does not point at an approval request.",
        );
    };
    let store = &app.store;
    let Some(current) = requests::get(store, id).await? else {
        return notice(
            teams,
            Tone::Warning,
            "No such request",
            &format!("No approval request has id {id}."),
        );
    };
    let verdict = match verb {
        "approve" => Verdict::Approve,
        "deny" => Verdict::Deny,
        other => {
            return request_card(
                teams,
                &current,
                Some(Notice::new(
                    Tone::Warning,
                    format!("'{other}' is not something this card can do."),
                )),
            );
        }
    };
    let who = match resolve_sender(teams, app, a).await {
        Ok(p) => p,
        Err(why) => {
            let aad = a
                .from
                .as_ref()
                .and_then(|f| f.aad_object_id.clone())
                .unwrap_or_else(|| "unknown".into());
            let (action, message) = (current.action.clone(), why.clone());
            app.store
                .write(move |ctx| {
                    Box::pin(async move {
                        ctx.audit(
                            &format!("teams:{aad}"),
                            Some((id, &action)),
                            "decision.blocked",
                            &json!({
                                "reason": "unknown_person", "message": message,
                                "verdict": verdict, "channel": "teams",
                            }),
                        )
                        .await?;
                        Ok(())
                    })
                })
                .await?;
            return request_card(teams, &current, Some(Notice::new(Tone::Attention, why)));
        }
    };
    // A click is bound to the card it was made on, or it does not count.
    let Some(shown) = binding::shown_hash(field("payload_sha256")) else {
        binding::refuse_unbound(app, who.as_str(), id, verdict, "teams").await?;
        return request_card(
            teams,
            &current,
            Some(Notice::new(Tone::Attention, binding::UNBOUND)),
        );
    };
    let comment = match verdict {
        Verdict::Deny => field("reason")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        Verdict::Approve => None,
    };
    let outcome = app
        .decide(DecisionInput {
            request_id: id,
            who,
            verdict,
            comment,
            channel: "teams",
            payload_sha256: Some(shown),
        })
        .await;
    match outcome {
        Ok(after) => {
            let text = match (verdict, after.status.is_final()) {
                (Verdict::Deny, _) => "You denied this request.".to_string(),
                (Verdict::Approve, true) => "You approved this request.".to_string(),
                (Verdict::Approve, false) => format!(
                    "Your approval is recorded: {} of {}.",
                    after.approvals.len(),
                    after.required_approvals
                ),
            };
            request_card(teams, &after, Some(Notice::new(Tone::Good, text)))
        }
        Err(AppError::Refused(r)) => {
            let tone = if r == Refusal::CommentRequired {
                Tone::Warning
            } else {
                Tone::Attention
            };
            let fresh = requests::get(store, id).await?.unwrap_or(current);
            request_card(teams, &fresh, Some(Notice::new(tone, r.message())))
        }
        Err(
            AppError::Conflict(m)
            | AppError::Unprocessable(m)
            | AppError::NotFound(m)
            | AppError::BadRequest(m),
        ) => {
            let fresh = requests::get(store, id).await?.unwrap_or(current);
            request_card(teams, &fresh, Some(Notice::new(Tone::Attention, m)))
        }
        Err(e) => Err(e),
    }
}

/// The principal of whoever sent the activity, or why there is none.
async fn resolve_sender(teams: &Teams, app: &App, a: &Activity) -> Result<Principal, String> {
    let from = a
        .from
        .as_ref()
        .ok_or("The activity does not say who sent it.")?;
    resolve_account(teams, app, a, &from.id, from.aad_object_id.as_deref()).await
}

async fn resolve_account(
    teams: &Teams,
    app: &App,
    a: &Activity,
    user_id: &str,
    aad: Option<&str>,
) -> Result<Principal, String> {
    let aad = aad.filter(|s| !s.is_empty());
    let unlinked = |aad: Option<&str>, why: &str| {
        format!(
            "Countersign cannot tell who you are ({why}), so you cannot decide. An operator can link your account: countersign identities link teams:{} user:YOUR-EMAIL",
            aad.unwrap_or("AAD_OBJECT_ID")
        )
    };
    if let Some(aad) = aad {
        if let Some(p) = linked(app, aad).await? {
            return Ok(p);
        }
        if let Some(p) = teams.identities.get(aad) {
            return Ok(p);
        }
    }
    let (Some(service_url), Some(conv)) = (a.service_url.as_deref(), a.conversation.as_ref())
    else {
        return Err(unlinked(aad, "no conversation to look you up in"));
    };
    if user_id.is_empty() {
        return Err(unlinked(aad, "Teams sent no user id"));
    }
    let member = teams
        .connector
        .member(service_url, &conv.id, user_id)
        .await
        .map_err(|e| unlinked(aad, &format!("the member lookup failed: {}", e.message())))?;
    let aad = match (aad, member.aad_object_id.as_deref()) {
        (Some(a1), Some(a2)) if a1 != a2 => {
            return Err(unlinked(Some(a1), "the member lookup named someone else"));
        }
        (Some(a1), _) => a1.to_string(),
        (None, Some(a2)) => {
            if let Some(p) = linked(app, a2).await? {
                return Ok(p);
            }
            a2.to_string()
        }
        (None, None) => return Err(unlinked(None, "Teams sent no AAD object id")),
    };
    let mail = member
        .email
        .or(member.user_principal_name)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| unlinked(Some(&aad), "your Teams account has no e-mail address"))?;
    let p = Principal::parse(&format!("user:{mail}"))
        .map_err(|_| unlinked(Some(&aad), "your Teams e-mail address is not usable"))?;
    teams.identities.put(&aad, p.clone());
    Ok(p)
}

async fn linked(app: &App, aad: &str) -> Result<Option<Principal>, String> {
    crate::store::identities::linked(&app.store, &format!("teams:{aad}"))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading identity links failed");
            "reading identity links failed; try again".to_string()
        })
}

/// The bot was added to or removed from a conversation.
async fn membership(app: &App, a: &Activity) -> AppResult<()> {
    let (Some(conv), Some(service_url)) = (a.conversation.clone(), a.service_url.clone()) else {
        return Ok(());
    };
    let added = match (a.kind.as_str(), a.action.as_deref()) {
        ("installationUpdate", Some("add")) => Some(true),
        ("installationUpdate", Some("remove")) => Some(false),
        ("conversationUpdate", _) if a.members_added.iter().any(|m| a.is_bot(m)) => Some(true),
        ("conversationUpdate", _) if a.members_removed.iter().any(|m| a.is_bot(m)) => Some(false),
        _ => None,
    };
    let by = a.from.as_ref().and_then(|f| f.aad_object_id.clone());
    match added {
        Some(true) => {
            let c = Captured {
                conversation_id: conv.id.clone(),
                service_url,
                tenant_id: a.tenant().map(str::to_string),
                conversation_type: conv.conversation_type.clone(),
                team_id: a.channel_data_str(&["team", "id"]),
                team_name: a.channel_data_str(&["team", "name"]),
                name: conv
                    .name
                    .clone()
                    .or_else(|| a.channel_data_str(&["channel", "name"])),
                added_by: by,
            };
            app.store
                .write(move |ctx| Box::pin(async move { conversations::capture(ctx, &c).await }))
                .await
        }
        Some(false) => {
            app.store
                .write(move |ctx| {
                    Box::pin(
                        async move { conversations::removed(ctx, &conv.id, by.as_deref()).await },
                    )
                })
                .await
        }
        None => Ok(()),
    }
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

async fn answer_message(teams: &Teams, app: &App, a: &Activity) {
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

/// What follows `audit` in a message's command text; `None` for any other
/// message.
pub fn audit_words(text: &str) -> Option<&str> {
    match text.split_once(' ') {
        Some((first, rest)) if first.eq_ignore_ascii_case("audit") => Some(rest),
        None if text.eq_ignore_ascii_case("audit") => Some(""),
        _ => None,
    }
}

async fn message_card(teams: &Teams, app: &App, a: &Activity) -> AppResult<Value> {
    let (text, mentions) = command_text(a);
    let rest = match audit_words(&text) {
        Some(rest) => rest,
        None => {
            return notice(
                teams,
                Tone::Good,
                "Countersign",
                &format!(
                    "I post approval cards here and answer audit questions. {}",
                    audit_command::HELP
                ),
            );
        }
    };
    let who = match resolve_sender(teams, app, a).await {
        Ok(p) => p,
        Err(why) => return notice(teams, Tone::Attention, "Who are you?", &why),
    };
    let parsed = match audit_command::parse(rest, crate::clock::now()) {
        Ok(p) => p,
        Err(e) => return notice(teams, Tone::Warning, "audit", &e),
    };
    let person = match &parsed.command {
        AuditCommand::Person(PersonRef::Principal(p)) => Some(p.clone()),
        AuditCommand::Person(PersonRef::Mention(m)) => {
            let account = m
                .strip_prefix("@mention")
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| mentions.get(n));
            match account {
                Some(acc) => resolve_account(teams, app, a, &acc.id, acc.aad_object_id.as_deref())
                    .await
                    .ok(),
                None => None,
            }
        }
        _ => None,
    };
    match app.audit_query(&who, parsed, person).await {
        Ok(answer) => teams
            .templates
            .audit_card(&answer, &format!("audit {rest}"))
            .map_err(AppError::Internal),
        Err(AppError::Forbidden(m)) => notice(teams, Tone::Attention, "Not allowed", &m),
        Err(e @ (AppError::NotFound(_) | AppError::BadRequest(_) | AppError::Unprocessable(_))) => {
            notice(teams, Tone::Warning, "audit", &e.to_string())
        }
        Err(e) => Err(e),
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
