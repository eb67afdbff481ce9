//! `invoke` / `adaptiveCard/action`: an Approve or Deny click, through
//! the kit's "decide and explain" ([`crate::channels::kit::decide`]). The
//! invoke response carries the updated card, with a line for the clicker
//! (recorded, or why it did not count). Teams shows that card to the
//! clicker; the outbox updates the posted card for everyone.

use serde_json::Value;
use uuid::Uuid;

use super::super::Teams;
use super::super::card::{Notice, Tone};
use super::super::identity;
use super::{Activity, notice};
use crate::channels::kit::binding;
use crate::channels::kit::decide::{self, Click, Explained, Severity};
use crate::channels::kit::identity::Unresolved;
use crate::domain::Verdict;
use crate::error::{AppError, AppResult};
use crate::service::App;
use crate::store::requests::{self, Approval};

async fn request_card(
    teams: &Teams,
    app: &App,
    a: &Approval,
    n: Option<Notice>,
) -> AppResult<Value> {
    let console = crate::channels::kit::console_link::ConsoleLink::for_request(app, a).await?;
    teams
        .templates
        .request_card_with(a, n.as_ref(), &console)
        .map_err(AppError::Internal)
}

/// An Approve or Deny click; returns the card to answer with.
pub async fn card_action(teams: &Teams, app: &App, a: &Activity) -> AppResult<Value> {
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
    let Some(current) = requests::get(&app.store, id).await? else {
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
                app,
                &current,
                Some(Notice::new(
                    Tone::Warning,
                    format!("'{other}' is not something this card can do."),
                )),
            )
            .await;
        }
    };
    let who = match a.from.as_ref() {
        Some(from) => identity::resolve(teams, a, &from.id, from.aad_object_id.as_deref()).await,
        None => Err(Unresolved::unmapped(
            "teams:AAD_OBJECT_ID",
            "the activity does not say who sent it",
        )),
    };
    let comment = match verdict {
        Verdict::Deny => field("reason")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        Verdict::Approve => None,
    };
    let click = Click {
        request_id: id,
        verdict,
        // A click is bound to the card it was made on, or it does not count.
        shown: binding::shown_hash(field("payload_sha256")),
        comment,
        channel: super::super::CHANNEL,
    };
    match decide::decide(app, who, click).await {
        Explained::Recorded(after) => {
            request_card(
                teams,
                app,
                &after,
                Some(Notice::new(Tone::Good, decide::recorded(verdict, &after))),
            )
            .await
        }
        Explained::NotCounted {
            why,
            severity,
            request,
        } => {
            let tone = match severity {
                Severity::Warning => Tone::Warning,
                Severity::Attention => Tone::Attention,
            };
            let shown = request.map(|r| *r).unwrap_or(current);
            request_card(teams, app, &shown, Some(Notice::new(tone, why))).await
        }
    }
}
