//! Interactions: Approve and Deny clicks, the deny modal's submission, and
//! the "next page" button of `/audit` answers. They arrive at
//! `POST /slack/interactions` (signed; the signature is checked before the
//! body is read) or over Socket Mode ([`super::socket_mode`]); both call
//! [`dispatch`]. Slack wants an
//! answer within 3 seconds, and a `trigger_id` dies after 3 seconds, so
//! the work (identity lookup, the decision, opening the modal, telling the
//! clicker why a click did not count) starts at once in its own task; the
//! handler waits for it up to [`super::ANSWER_WITHIN`] (so normally the
//! decision is committed before Slack hears 200) and answers regardless.
//!
//! The payload is read into only the fields used here, so an unfamiliar
//! element elsewhere in Slack's payload cannot make a click fail; it is
//! read strictly ([`crate::json`]): a key twice anywhere is a 400.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::render::{self, ButtonValue};
use super::{Recipient, Slack, form_field, within_budget};
use crate::channels::kit::binding;
use crate::channels::kit::decide::{self, Click, Explained};
use crate::domain::Verdict;
use crate::error::{AppError, AppResult};
use crate::store::requests;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Interaction {
    BlockActions(BlockActions),
    ViewSubmission(ViewSubmission),
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct IdOnly {
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    team_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Container {
    channel_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BlockActions {
    user: User,
    team: Option<IdOnly>,
    channel: Option<IdOnly>,
    container: Option<Container>,
    trigger_id: Option<String>,
    response_url: Option<String>,
    #[serde(default)]
    actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
struct Action {
    action_id: String,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ViewSubmission {
    user: User,
    team: Option<IdOnly>,
    view: View,
}

#[derive(Debug, Deserialize)]
struct View {
    callback_id: Option<String>,
    private_metadata: Option<String>,
    state: Option<ViewState>,
}

#[derive(Debug, Deserialize)]
struct ViewState {
    values: HashMap<String, HashMap<String, StateValue>>,
}

#[derive(Debug, Deserialize)]
struct StateValue {
    value: Option<String>,
}

/// What the deny modal carries from the click to the submission.
#[derive(Debug, Serialize, Deserialize)]
struct DenyContext {
    request_id: String,
    /// Always set by us; a submission without it is refused as unbound.
    #[serde(default)]
    payload_sha256: Option<String>,
    channel: Option<String>,
    response_url: Option<String>,
}

fn team_of(team: &Option<IdOnly>, user: &User) -> String {
    team.as_ref()
        .and_then(|t| t.id.clone())
        .or_else(|| user.team_id.clone())
        .unwrap_or_default()
}

pub async fn handle(
    Extension(slack): Extension<Arc<Slack>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<Response> {
    let body = slack.verify(&headers, &body)?;
    let payload = form_field(body, "payload")
        .ok_or_else(|| AppError::BadRequest("expected a form field named payload".into()))?;
    Ok(match dispatch(slack, payload.as_bytes()).await? {
        None => StatusCode::OK.into_response(),
        Some(answer) => Json(answer).into_response(),
    })
}

/// Handles one interaction payload (Slack's JSON) from an authenticated
/// transport: the HTTP endpoint after its signature check, or a Socket
/// Mode envelope, which the app token's connection authenticates. Returns
/// what Slack should hear back: nothing (HTTP 200, a bare acknowledgement),
/// or a body (the deny form's field errors, which keep the modal open).
pub async fn dispatch(slack: Arc<Slack>, payload: &[u8]) -> AppResult<Option<Value>> {
    match read(payload)? {
        Interaction::BlockActions(ev) => {
            within_budget(block_actions(slack, ev)).await;
            Ok(None)
        }
        Interaction::ViewSubmission(ev) => view_submission(slack, ev).await,
        Interaction::Other => Ok(None),
    }
}

fn read(payload: &[u8]) -> AppResult<Interaction> {
    // Strict: a payload with a key twice could show one value to a reader
    // of the bytes and act on another.
    crate::json::from_slice_strict(payload)
        .map_err(|e| AppError::BadRequest(format!("the interaction payload is not valid: {e}")))
}

/// Every parse a signed body goes through here (the payload, button
/// values, the deny form's context), with no Slack or database; the fuzz
/// targets (`fuzz/`) call it.
pub fn parse_payload(body: &str) -> AppResult<()> {
    let payload = form_field(body, "payload")
        .ok_or_else(|| AppError::BadRequest("expected a form field named payload".into()))?;
    match read(payload.as_bytes())? {
        Interaction::BlockActions(ev) => {
            for a in &ev.actions {
                bound(a.value.as_deref().unwrap_or_default());
            }
        }
        Interaction::ViewSubmission(ev) => {
            if let Some(m) = ev.view.private_metadata.as_deref()
                && let Ok(c) = crate::json::from_slice_strict::<DenyContext>(m.as_bytes())
            {
                let _ = Uuid::parse_str(&c.request_id);
            }
        }
        Interaction::Other => {}
    }
    Ok(())
}

async fn block_actions(slack: Arc<Slack>, ev: BlockActions) {
    let to = Recipient {
        team: team_of(&ev.team, &ev.user),
        user: ev.user.id.clone(),
        channel: ev
            .container
            .as_ref()
            .and_then(|c| c.channel_id.clone())
            .or_else(|| ev.channel.as_ref().and_then(|c| c.id.clone())),
        response_url: ev.response_url.clone(),
    };
    for action in &ev.actions {
        let value = action.value.as_deref().unwrap_or_default();
        match action.action_id.as_str() {
            render::APPROVE => approve(&slack, &to, value).await,
            render::DENY => open_deny_modal(&slack, &to, value, ev.trigger_id.as_deref()).await,
            render::AUDIT_PAGE => super::commands::next_page(&slack, &to, value).await,
            _ => {}
        }
    }
}

/// The request a button points at and the payload hash it carries (None
/// when it carries none: such a click is refused, see [`binding`]).
fn bound(value: &str) -> Option<(Uuid, Option<String>)> {
    let v = ButtonValue::decode(value)?;
    Some((
        Uuid::parse_str(&v.request_id).ok()?,
        binding::shown_hash(v.payload_sha256.as_deref()),
    ))
}

const NOT_OURS: &str = "This button did not come from Countersign, so nothing was recorded.";

/// Decides through the kit and tells the clicker when it did not count.
/// Success needs no reply: the message itself is updated in place.
async fn decide_and_tell(slack: &Slack, to: &Recipient, click: Click) {
    let who = slack.identities.resolve(&to.team, &to.user).await;
    if let Explained::NotCounted { why, .. } = decide::decide(&slack.app, who, click).await {
        slack.tell(to, &why).await;
    }
}

async fn approve(slack: &Slack, to: &Recipient, value: &str) {
    let Some((request_id, shown)) = bound(value) else {
        return slack.tell(to, NOT_OURS).await;
    };
    let click = Click {
        request_id,
        verdict: Verdict::Approve,
        shown,
        comment: None,
        channel: super::CHANNEL,
    };
    decide_and_tell(slack, to, click).await;
}

async fn open_deny_modal(slack: &Slack, to: &Recipient, value: &str, trigger: Option<&str>) {
    let (Some((request_id, shown)), Some(trigger)) = (bound(value), trigger) else {
        return slack.tell(to, NOT_OURS).await;
    };
    // An unmapped account is told (and audited) now rather than after
    // typing a reason; so is a click that is not bound to a payload.
    let who = slack.identities.resolve(&to.team, &to.user).await;
    let (Ok(_), Some(shown)) = (&who, shown.clone()) else {
        let click = Click {
            request_id,
            verdict: Verdict::Deny,
            shown: None,
            comment: None,
            channel: super::CHANNEL,
        };
        if let Explained::NotCounted { why, .. } = decide::decide(&slack.app, who, click).await {
            slack.tell(to, &why).await;
        }
        return;
    };
    let approval = match requests::get(&slack.app.store, request_id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return slack
                .tell(to, &format!("No approval request has id {request_id}."))
                .await;
        }
        Err(e) => return slack.tell(to, &decide::refusal(e).0).await,
    };
    let context = DenyContext {
        request_id: request_id.to_string(),
        payload_sha256: Some(shown),
        channel: to.channel.clone(),
        response_url: to.response_url.clone(),
    };
    let metadata = serde_json::to_string(&context).expect("strings serialize");
    let view = match slack.templates.deny_modal(&approval, metadata) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "rendering the deny modal failed");
            return slack
                .tell(
                    to,
                    "Countersign could not show the deny form; nothing was recorded.",
                )
                .await;
        }
    };
    if let Err(e) = slack.api.open_view(trigger, view).await {
        tracing::warn!(error = %e, "views.open failed");
        slack
            .tell(
                to,
                "Slack would not open the deny form (the click may have been too long ago); nothing was recorded. Please click Deny again.",
            )
            .await;
    }
}

async fn view_submission(slack: Arc<Slack>, ev: ViewSubmission) -> AppResult<Option<Value>> {
    if ev.view.callback_id.as_deref() != Some(render::DENY_CALLBACK) {
        return Ok(None);
    }
    let context: DenyContext = ev
        .view
        .private_metadata
        .as_deref()
        .and_then(|m| crate::json::from_slice_strict(m.as_bytes()).ok())
        .ok_or_else(|| AppError::BadRequest("the deny form lost its request".into()))?;
    let request_id = Uuid::parse_str(&context.request_id)
        .map_err(|_| AppError::BadRequest("the deny form lost its request".into()))?;
    let reason = ev
        .view
        .state
        .as_ref()
        .and_then(|s| s.values.get(render::REASON))
        .and_then(|b| b.get(render::REASON))
        .and_then(|v| v.value.clone())
        .unwrap_or_default();
    if reason.trim().is_empty() {
        // Keeps the modal open with the message under the field.
        return Ok(Some(json!({
            "response_action": "errors",
            "errors": { render::REASON: crate::domain::rules::Refusal::CommentRequired.message() },
        })));
    }
    let to = Recipient {
        team: team_of(&ev.team, &ev.user),
        user: ev.user.id.clone(),
        channel: context.channel.clone(),
        response_url: context.response_url.clone(),
    };
    within_budget(async move {
        let click = Click {
            request_id,
            verdict: Verdict::Deny,
            shown: binding::shown_hash(context.payload_sha256.as_deref()),
            comment: Some(reason.trim().to_string()),
            channel: super::CHANNEL,
        };
        decide_and_tell(&slack, &to, click).await;
    })
    .await;
    // An empty answer closes the modal.
    Ok(None)
}
