//! A request in full: the payload and details never cut, the policy rule
//! and version, who must and who did approve, and the timeline of its
//! audit events with their seq and hashes; approve / deny with a comment.
//!
//! A decision is `App::decide` with channel `console` and the payload hash
//! this page showed, plus (for step-up rules) the resource as re-typed:
//! the shared rules judge it, and a refusal shows the sentence chat shows
//! (`kit::decide::refusal`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{ConsoleError, ConsoleResult};
use super::session::{Posted, Signed};
use super::{html, templates};
use crate::channels::kit::decide::{recorded, refusal};
use crate::channels::kit::view::{
    detail_value, risk_emoji, shown_principal, status_label, utc_seconds,
};
use crate::channels::text::visible;
use crate::domain::rules;
use crate::domain::{Status, Verdict};
use crate::service::App;
use crate::service::approvals::DecisionInput;
use crate::store::requests::{self, Approval};
use crate::store::trail::{self, AuditEventView, AuditFilter};

/// What every signed-in page's layout needs.
pub fn chrome(app: &App, signed: &Signed) -> Value {
    context! {
        who => shown_principal(signed.who.as_str()),
        csrf => signed.csrf(),
        may_audit => signed.may_audit(app),
        may_admin => signed.may_admin(app),
    }
}

/// The CSS class of a status, the colours of the chat messages.
pub fn status_class(s: Status) -> &'static str {
    s.as_str()
}

#[derive(Serialize)]
struct DecisionRow {
    who: String,
    verdict: String,
    comment: Option<String>,
    channel: String,
    at: String,
}

#[derive(Serialize)]
struct EventRow {
    seq: i64,
    ts: String,
    actor: String,
    kind: String,
    data: String,
    prev_hash: String,
    hash: String,
}

fn parse_id(id: &str) -> ConsoleResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| {
        ConsoleError::NotFound(format!("'{}' is not a request id.", visible(id, false)))
    })
}

/// Whether `signed` may see request `a`: someone who may decide it, an
/// auditor, or someone it involves. Anyone else is told it does not exist.
fn may_see(app: &App, signed: &Signed, a: &Approval) -> bool {
    let who = signed.who.as_str();
    rules::eligible(&a.facts(), &signed.who).is_ok()
        || signed.may_audit(app)
        || a.requester.as_str() == who
        || a.on_behalf_of.as_ref().is_some_and(|p| p.as_str() == who)
        || a.key_owner.as_ref().is_some_and(|p| p.as_str() == who)
        || a.decisions.iter().any(|d| d.principal == who)
}

async fn load(app: &App, signed: &Signed, id: Uuid) -> ConsoleResult<Approval> {
    let missing = || ConsoleError::NotFound(format!("No approval request has id {id}."));
    let a = requests::get(&app.store, id).await?.ok_or_else(missing)?;
    if !may_see(app, signed, &a) {
        return Err(missing());
    }
    Ok(a)
}

struct Banner {
    notice: Option<String>,
    error: Option<String>,
    comment: String,
    confirmation: String,
    /// The refusal asks for a fresh provider sign-in.
    reauth: bool,
}

async fn render(app: &App, signed: &Signed, a: &Approval, banner: Banner) -> ConsoleResult<String> {
    let events = trail::query(
        &app.store,
        &AuditFilter {
            request_id: Some(a.id),
            limit: 500,
            ..Default::default()
        },
    )
    .await?;
    let mut events: Vec<EventRow> = events
        .into_iter()
        .map(AuditEventView::from)
        .map(|e| EventRow {
            seq: e.seq,
            ts: utc_seconds(&e.ts),
            actor: visible(&e.actor, false),
            kind: e.kind,
            data: visible(
                &serde_json::to_string_pretty(&e.data).unwrap_or_default(),
                true,
            ),
            prev_hash: e.prev_hash,
            hash: e.hash,
        })
        .collect();
    events.reverse();
    let step_up = requests::step_up_of(&app.store, a.id).await?;
    let eligible = rules::eligible(&a.facts(), &signed.who);
    let row = |d: &requests::DecisionView| DecisionRow {
        who: visible(shown_principal(&d.principal), false),
        verdict: d.verdict.clone(),
        comment: d.comment.as_deref().map(|c| visible(c, true)),
        channel: d.channel.clone(),
        at: utc_seconds(&d.at),
    };
    let details: Vec<(String, String)> = a
        .details
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(_) => detail_value(v),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            };
            (visible(k, false), visible(&v, true))
        })
        .collect();
    let pending = a.status == Status::Pending;
    let r = context! {
        id => a.id.to_string(),
        status => a.status.as_str(),
        status_label => status_label(a.status),
        status_class => status_class(a.status),
        risk => a.risk.as_str(),
        risk_emoji => risk_emoji(a.risk),
        action => visible(&a.action, false),
        resource => visible(&a.resource, false),
        summary => visible(&a.summary, true),
        justification => a.justification.as_deref().map(|j| visible(j, true)),
        details => Value::from(minijinja::value::Serde(&details)),
        requester => visible(shown_principal(a.requester.as_str()), false),
        on_behalf_of => a.on_behalf_of.as_ref().map(|p| visible(shown_principal(p.as_str()), false)),
        key_owner => a.key_owner.as_ref().map(|p| visible(shown_principal(p.as_str()), false)),
        policy_rule => visible(&a.policy.rule, false),
        policy_version => a.policy.version.clone(),
        required_approvals => a.required_approvals,
        approvers => Value::from(minijinja::value::Serde(a.approvers.iter().map(|p| shown_principal(p.as_str()).to_string()).collect::<Vec<_>>())),
        approvals => Value::from(minijinja::value::Serde(a.approvals.iter().map(row).collect::<Vec<_>>())),
        decisions => Value::from(minijinja::value::Serde(a.decisions.iter().map(row).collect::<Vec<_>>())),
        payload_sha256 => a.payload_sha256.clone(),
        created => utc_seconds(&a.created_at),
        expires => utc_seconds(&a.expires_at),
        decided => a.decided_at.as_deref().map(utc_seconds),
        decided_by => a.decided_by.as_deref().map(|d| visible(shown_principal(d), false)),
        reason => a.reason.as_deref().map(|r| visible(r, true)),
        pending => pending,
    };
    Ok(templates::render(
        "request.html",
        context! {
            title => format!("{} · {}", visible(&a.action, false), visible(&a.resource, false)),
            r => r,
            events => Value::from(minijinja::value::Serde(&events)),
            step_up => step_up,
            can_decide => pending && eligible.is_ok(),
            why_not => eligible.err().filter(|_| pending).map(|r| r.message()),
            notice => banner.notice,
            error => banner.error,
            reauth => banner.reauth.then(|| format!(
                "/ui/login/oidc?max_age={}&next={}",
                rules::STEP_UP_MAX_AGE_SECS,
                urlencoding::encode(&format!("/ui/requests/{}", a.id))
            )),
            comment => banner.comment,
            confirmation => banner.confirmation,
            ..chrome(app, signed)
        },
    ))
}

#[derive(Deserialize)]
pub struct Shown {
    notice: Option<String>,
}

/// `GET /ui/requests/<id>`.
pub async fn page(
    State(app): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<Shown>,
) -> ConsoleResult<Response> {
    let a = load(&app, &signed, parse_id(&id)?).await?;
    // The notice after a decision is one of ours, chosen by name: a link
    // cannot make the page say anything else.
    let notice = match q.notice.as_deref() {
        Some("deny") => Some(recorded(Verdict::Deny, &a)),
        Some("approve") => Some(recorded(Verdict::Approve, &a)),
        _ => None,
    };
    let banner = Banner {
        notice,
        error: None,
        comment: String::new(),
        confirmation: String::new(),
        reauth: false,
    };
    Ok(html(render(&app, &signed, &a, banner).await?))
}

/// `POST /ui/requests/<id>/decide`.
pub async fn decide(
    State(app): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    f: Posted,
) -> ConsoleResult<Response> {
    signed.check_csrf(f.get("csrf"))?;
    let id = parse_id(&id)?;
    load(&app, &signed, id).await?;
    let verdict = Verdict::parse(f.get("verdict").unwrap_or_default())
        .map_err(|_| ConsoleError::BadRequest("Choose approve or deny.".into()))?;
    let comment = f.owned("comment").filter(|c| !c.trim().is_empty());
    let decided = app
        .decide(DecisionInput {
            request_id: id,
            who: signed.who.clone(),
            verdict,
            comment,
            channel: rules::STEP_UP_CHANNEL,
            payload_sha256: f.owned("payload_sha256").filter(|h| !h.is_empty()),
            confirmation: f.owned("confirmation"),
            // Only a provider's sign-in is held to a recent time for step-up.
            signed_in_at: (signed.session.method == "oidc")
                .then(|| signed.auth_time())
                .flatten(),
        })
        .await;
    match decided {
        Ok(_) => Ok(
            Redirect::to(&format!("/ui/requests/{id}?notice={}", verdict.as_str())).into_response(),
        ),
        Err(e) => {
            let reauth = matches!(
                &e,
                crate::error::AppError::Refused(rules::Refusal::SignInTooOld)
            );
            let (why, _) = refusal(e);
            let a = load(&app, &signed, id).await?;
            let banner = Banner {
                notice: None,
                error: Some(why),
                reauth,
                comment: f.owned("comment").unwrap_or_default(),
                confirmation: f.owned("confirmation").unwrap_or_default(),
            };
            Ok((
                StatusCode::CONFLICT,
                html(render(&app, &signed, &a, banner).await?),
            )
                .into_response())
        }
    }
}
