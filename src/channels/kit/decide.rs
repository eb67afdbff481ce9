//! "Decide and explain": one click, from whoever clicked to a sentence
//! for them, the same on every platform.
//!
//! The order matters and is the same everywhere: who clicked (an account
//! that maps to no one is audited and told), then whether the click is
//! bound to the payload it was made on (refused and audited if not), then
//! `App::decide`, which applies every rule and audits its own refusals.
//! A platform only shows the result: Slack tells the clicker in an
//! ephemeral message (the posted message updates itself through the
//! outbox), Teams answers the invoke with the card and a notice.

use uuid::Uuid;

use super::binding;
use super::identity::{Unresolved, audit_unmapped};
use crate::domain::rules::Refusal;
use crate::domain::{Principal, Verdict};
use crate::error::AppError;
use crate::service::App;
use crate::service::approvals::DecisionInput;
use crate::store::requests::{self, Approval};

/// One click as a platform read it.
pub struct Click {
    pub request_id: Uuid,
    pub verdict: Verdict,
    /// The hash the button or card carried, if it is one
    /// ([`binding::shown_hash`]).
    pub shown: Option<String>,
    /// A denial's reason.
    pub comment: Option<String>,
    pub channel: &'static str,
}

/// How the clicker is told something did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// They can fix it themselves (give a reason).
    Warning,
    /// It will not count as it stands.
    Attention,
}

/// What came of a click.
pub enum Explained {
    /// Recorded; the request as it is now.
    Recorded(Box<Approval>),
    /// Not counted, why, and the request as it is now (when it exists).
    NotCounted {
        why: String,
        severity: Severity,
        request: Option<Box<Approval>>,
    },
}

impl Explained {
    fn not_counted(why: impl Into<String>, severity: Severity, request: Option<Approval>) -> Self {
        Self::NotCounted {
            why: why.into(),
            severity,
            request: request.map(Box::new),
        }
    }
}

/// Records `click` by `who` (or audits and explains why it cannot be).
pub async fn decide(app: &App, who: Result<Principal, Unresolved>, click: Click) -> Explained {
    let id = click.request_id;
    let who = match who {
        Ok(p) => p,
        Err(why) => {
            audit_unmapped(app, &why, id, click.verdict, click.channel).await;
            return Explained::not_counted(
                why.message(),
                Severity::Attention,
                fresh(app, id).await,
            );
        }
    };
    let Some(shown) = click.shown else {
        if let Err(e) =
            binding::refuse_unbound(app, who.as_str(), id, click.verdict, click.channel).await
        {
            tracing::error!(error = %format!("{e:#}"), "recording an unbound click failed");
        }
        return Explained::not_counted(binding::UNBOUND, Severity::Attention, fresh(app, id).await);
    };
    let decided = app
        .decide(DecisionInput {
            request_id: id,
            who,
            verdict: click.verdict,
            comment: click.comment,
            channel: click.channel,
            payload_sha256: Some(shown),
            confirmation: None,
            signed_in_at: None,
        })
        .await;
    match decided {
        Ok(after) => Explained::Recorded(Box::new(after)),
        Err(e) => {
            let (why, severity) = refusal(e);
            Explained::not_counted(why, severity, fresh(app, id).await)
        }
    }
}

/// What to tell someone whose decision was not recorded.
pub fn refusal(e: AppError) -> (String, Severity) {
    match e {
        AppError::Refused(r) => {
            let severity = if r == Refusal::CommentRequired {
                Severity::Warning
            } else {
                Severity::Attention
            };
            (r.message(), severity)
        }
        AppError::Conflict(m)
        | AppError::Unprocessable(m)
        | AppError::NotFound(m)
        | AppError::BadRequest(m) => (m, Severity::Attention),
        other => {
            tracing::error!(error = %format!("{other:#}"), "recording a chat decision failed");
            (
                "Countersign could not record your decision just now; nothing was recorded. Please try again."
                    .into(),
                Severity::Attention,
            )
        }
    }
}

/// The request as it is now, for showing it beside the explanation.
async fn fresh(app: &App, id: Uuid) -> Option<Approval> {
    requests::get(&app.store, id).await.ok().flatten()
}

/// What a recorded decision is confirmed with.
pub fn recorded(verdict: Verdict, after: &Approval) -> String {
    match (verdict, after.status.is_final()) {
        (Verdict::Deny, _) => "You denied this request.".to_string(),
        (Verdict::Approve, true) => "You approved this request.".to_string(),
        (Verdict::Approve, false) => format!(
            "Your approval is recorded: {} of {}.",
            after.approvals.len(),
            after.required_approvals
        ),
    }
}
