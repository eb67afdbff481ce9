//! The inbox: pending requests the signed-in person may decide, newest
//! first, with what each still needs. "May decide" is
//! [`rules::eligible`], the check every decision passes, so the inbox and
//! the decision path cannot disagree. `/ui/inbox/list` is the list alone,
//! which the page's script fetches when `/ui/events` says something changed.

use axum::extract::State;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Serialize;

use super::error::ConsoleResult;
use super::request::status_class;
use super::session::Signed;
use super::{html, templates};
use crate::channels::kit::view::{risk_emoji, shown_principal, utc};
use crate::channels::text::visible;
use crate::domain::rules;
use crate::domain::{Status, Verdict};
use crate::service::App;
use crate::store::requests::{self, Approval, ListFilter};

/// One row of the inbox.
#[derive(Serialize)]
pub struct Item {
    id: String,
    action: String,
    resource: String,
    summary: String,
    risk: &'static str,
    risk_emoji: &'static str,
    status_class: &'static str,
    requester: String,
    on_behalf_of: Option<String>,
    created: String,
    expires: String,
    /// What it still needs, in words.
    needs: String,
    step_up: bool,
    you_approved: bool,
}

/// How many pending requests are read for one inbox.
const SCAN: u32 = 500;

async fn items(app: &App, signed: &Signed) -> ConsoleResult<Vec<Item>> {
    let pending = requests::list(
        &app.store,
        &ListFilter {
            status: Some(Status::Pending),
            limit: SCAN,
            ..Default::default()
        },
    )
    .await?;
    let mut out = Vec::new();
    for a in pending
        .iter()
        .filter(|a| rules::eligible(&a.facts(), &signed.who).is_ok())
    {
        out.push(item(app, a, signed).await?);
    }
    Ok(out)
}

async fn item(app: &App, a: &Approval, signed: &Signed) -> ConsoleResult<Item> {
    let left = a
        .required_approvals
        .saturating_sub(a.approvals.len() as u32);
    let step_up = requests::step_up_of(&app.store, a.id).await?;
    let you_approved = a
        .decisions
        .iter()
        .any(|d| d.principal == signed.who.as_str() && d.verdict == Verdict::Approve.as_str());
    let mut needs = format!(
        "{left} more approval{} ({} of {} so far)",
        if left == 1 { "" } else { "s" },
        a.approvals.len(),
        a.required_approvals
    );
    if step_up {
        needs.push_str(" · step-up: decide here, re-typing the resource");
    }
    Ok(Item {
        id: a.id.to_string(),
        action: visible(&a.action, false),
        resource: visible(&a.resource, false),
        summary: visible(&a.summary, true),
        risk: a.risk.as_str(),
        risk_emoji: risk_emoji(a.risk),
        status_class: status_class(a.status),
        requester: shown_principal(a.requester.as_str()).to_string(),
        on_behalf_of: a
            .on_behalf_of
            .as_ref()
            .map(|p| shown_principal(p.as_str()).to_string()),
        created: utc(&a.created_at),
        expires: utc(&a.expires_at),
        needs,
        step_up,
        you_approved,
    })
}

/// `GET /ui/`.
pub async fn page(State(app): State<App>, signed: Signed) -> ConsoleResult<Response> {
    let items = items(&app, &signed).await?;
    Ok(html(templates::render(
        "inbox.html",
        context! { title => "Inbox", items => Value::from(minijinja::value::Serde(&items)), live => true, ..super::request::chrome(&app, &signed) },
    )))
}

/// `GET /ui/inbox/list`: the list alone.
pub async fn list(State(app): State<App>, signed: Signed) -> ConsoleResult<Response> {
    let items = items(&app, &signed).await?;
    Ok(html(templates::render(
        "inbox_list.html",
        context! { items => Value::from(minijinja::value::Serde(&items)) },
    )))
}
