//! "Answer an audit command": `/audit …` in Slack, `audit …` to the Teams
//! bot, the same steps in the same order.
//!
//! Who asks is resolved first (an unmapped account is told how to get
//! linked), then the grammar (`domain::audit_command`) reads the words,
//! then `App::audit_query` runs the query and enforces who may read the
//! trail. A mentioned person (`@bob`) is looked up on the platform only for
//! someone allowed to ask: anyone else is refused by the query anyway, and
//! must not be able to make the service resolve accounts for them.

use std::future::Future;

use super::identity::Unresolved;
use crate::domain::Principal;
use crate::domain::audit_command::{self, AuditCommand, PersonRef};
use crate::error::AppError;
use crate::service::App;
use crate::service::audit_query::AuditAnswer;

/// An answer to render, and which page of it was asked for.
pub struct Answer {
    pub answer: AuditAnswer,
    pub page: u32,
}

/// Why there is no answer, as a titled sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer {
    pub title: &'static str,
    pub text: String,
    /// Refused (as opposed to misunderstood).
    pub refused: bool,
}

impl NoAnswer {
    fn new(title: &'static str, text: impl Into<String>, refused: bool) -> Self {
        Self {
            title,
            text: text.into(),
            refused,
        }
    }
}

/// Answers `words` (the command's text after `audit`, as the platform
/// cleaned it) for `who`. `mention` turns a mention token of the grammar
/// into the person it names, through the platform.
pub async fn answer<F, Fut>(
    app: &App,
    who: Result<Principal, Unresolved>,
    words: &str,
    mention: F,
) -> Result<Answer, NoAnswer>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Option<Principal>>,
{
    let who = who.map_err(|why| NoAnswer::new("Who are you?", why.message(), true))?;
    let parsed = audit_command::parse(words, crate::clock::now())
        .map_err(|e| NoAnswer::new("audit", e, false))?;
    let person = match &parsed.command {
        AuditCommand::Person(PersonRef::Principal(p)) => Some(p.clone()),
        AuditCommand::Person(PersonRef::Mention(m)) if app.is_auditor(&who) => {
            mention(m.clone()).await
        }
        _ => None,
    };
    let page = parsed.page;
    match app.audit_query(&who, parsed, person).await {
        Ok(answer) => Ok(Answer { answer, page }),
        Err(AppError::Forbidden(m)) => Err(NoAnswer::new("Not allowed", m, true)),
        Err(e @ (AppError::BadRequest(_) | AppError::NotFound(_) | AppError::Unprocessable(_))) => {
            Err(NoAnswer::new("audit", e.to_string(), false))
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "an audit query failed");
            Err(NoAnswer::new(
                "Countersign",
                "Countersign could not answer; the error has been logged.",
                false,
            ))
        }
    }
}
