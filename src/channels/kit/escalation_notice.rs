//! The escalation notice: when a request escalates and its rule names an
//! `escalate_channel` (Slack) or `escalate_conversation` (Teams), the
//! people escalation added are told there that a request waits for them.
//!
//! The request's own message stays where it was posted and is still where
//! it is decided (it is updated to say "Escalated to oncall at …"); the
//! notice says what waits, for how long, how many approvals it still
//! needs, and where to decide it. It goes through the outbox
//! (`<channel>.escalate`, in the request's lane, after the update) and is
//! audited as `<channel>.escalation_posted`.

use std::time::Duration;

use super::view::RequestFacts;
use crate::store::requests::Approval;

/// A notice as every channel shows it (not yet escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationNotice {
    /// `⏫ Escalated: db.export on prod/customers`.
    pub title: String,
    /// `Pending for 30m; oncall may now decide it too.`
    pub sentence: String,
    /// Labelled facts, in order.
    pub lines: Vec<(&'static str, String)>,
}

impl EscalationNotice {
    /// `label` names whom the request escalated to (`oncall`), `after` is
    /// the rule's `escalate_after`, `command` the platform's command that
    /// shows a request in full and `console` the request's console page.
    pub fn new(
        a: &Approval,
        label: &str,
        after: Duration,
        command: &str,
        console: Option<&str>,
    ) -> Self {
        let f = RequestFacts::new(a, command);
        let missing = f
            .required_approvals
            .saturating_sub(f.approvals.len() as u32);
        let mut lines = vec![
            ("Summary", f.summary.clone()),
            ("Asked by", f.requester.clone()),
            (
                "Still needs",
                format!(
                    "{missing} more approval{} ({})",
                    if missing == 1 { "" } else { "s" },
                    f.progress()
                ),
            ),
            ("Expires", f.expires.clone()),
            (
                "Request",
                format!("{} ({command} {} shows it all)", f.id, f.id),
            ),
        ];
        if let Some(url) = console {
            lines.push(("Console", url.to_string()));
        }
        Self {
            title: format!("⏫ Escalated: {} on {}", f.action, f.resource),
            sentence: format!(
                "Pending for {}; {label} may now decide it too.",
                humantime::format_duration(after)
            ),
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_says_what_waits_how_long_for_whom_and_what_it_still_needs() {
        let mut a = crate::channels::slack::render::samples::hostile();
        a.action = "db.export".into();
        a.resource = "prod/customers".into();
        a.summary = "Export it".into();
        a.required_approvals = 2;
        a.approvals.clear();
        let n = EscalationNotice::new(&a, "oncall", Duration::from_secs(1800), "/audit", None);
        assert_eq!(n.title, "⏫ Escalated: db.export on prod/customers");
        assert_eq!(n.sentence, "Pending for 30m; oncall may now decide it too.");
        assert!(n.lines.contains(&("Summary", "Export it".into())));
        assert!(
            n.lines
                .contains(&("Still needs", "2 more approvals (0 of 2 approvals)".into())),
            "{:?}",
            n.lines
        );
        assert!(!n.lines.iter().any(|(l, _)| *l == "Console"));
    }

    #[test]
    fn a_notice_links_the_console_page_when_there_is_one() {
        let a = crate::channels::slack::render::samples::hostile();
        let url = "https://countersign.example.com/console/requests/x";
        let n = EscalationNotice::new(&a, "oncall", Duration::from_secs(60), "/audit", Some(url));
        assert!(n.lines.contains(&("Console", url.into())));
    }
}
