//! The outcome notice: when a request becomes final, the human an agent
//! acted for (its `on_behalf_of`) is told in a direct message what was
//! asked, what came of it, who decided and what they said, on every
//! channel where they have an account. Rules opt out with
//! `notify_on_behalf_of: false`.
//!
//! It goes through the outbox like every chat message (`<channel>.notify`,
//! in the request's lane, after the last update), so a platform outage
//! delays it instead of losing it, and it is audited:
//! `<channel>.notified`, or `<channel>.not_notified` when the person has
//! no account there.

use super::view::{RequestFacts, status_label};
use crate::store::requests::Approval;

/// A notice as every channel shows it (not yet escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeNotice {
    /// `✅ Approved: db.export on prod/customers`.
    pub title: String,
    /// Labelled facts, in order.
    pub lines: Vec<(&'static str, String)>,
}

impl OutcomeNotice {
    /// `command` is the platform's command that shows a request in full.
    pub fn new(a: &Approval, command: &str) -> Self {
        let f = RequestFacts::new(a, command);
        let mut lines = vec![
            ("Asked by", f.requester.clone()),
            ("Summary", f.summary.clone()),
            (
                "Decided by",
                f.decided_by.clone().unwrap_or_else(|| "the service".into()),
            ),
        ];
        if let Some(when) = &f.decided_at {
            lines.push(("At", when.clone()));
        }
        if let Some(note) = &f.outcome_note {
            lines.push(("Comment", note.clone()));
        }
        lines.push((
            "Request",
            format!("{} ({command} {} shows it all)", f.id, f.id),
        ));
        Self {
            title: format!("{}: {} on {}", status_label(a.status), f.action, f.resource),
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Status;

    #[test]
    fn a_notice_says_what_was_asked_the_outcome_who_decided_and_their_comment() {
        let mut a = crate::channels::slack::render::samples::hostile();
        a.action = "db.export".into();
        a.resource = "prod/customers".into();
        a.summary = "Export it".into();
        a.status = Status::Denied;
        a.decided_by = Some("user:bob@example.com".into());
        a.reason = Some("freeze".into());
        let n = OutcomeNotice::new(&a, "audit");
        assert_eq!(n.title, "⛔ Denied: db.export on prod/customers");
        assert!(n.lines.contains(&("Decided by", "bob@example.com".into())));
        assert!(n.lines.contains(&("Comment", "freeze".into())));
        assert!(n.lines.contains(&("Summary", "Export it".into())));
    }
}
