//! Escalation: a request still pending `escalate_after` after it was made
//! widens, once, the set of people who may approve it to the rule's
//! `escalate_to`. The required count stays; the decision rules judge a
//! click against the widened set exactly as against the first one, so
//! nothing here decides anything: it only says when escalation is due and
//! what set it leads to.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Principal;

/// The audit kind of a recorded escalation (by the system).
pub const ESCALATED: &str = "request.escalated";

/// A rule's escalation, as the policy compiled it.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    /// How long a request may stay pending before it escalates.
    pub after: Duration,
    /// The people added, expanded from users and groups.
    pub to: Vec<Principal>,
    /// `escalate_to` as written (`group:oncall`, `user:…`), for the message:
    /// "Escalated to oncall at …".
    pub names: Vec<String>,
    /// Where Slack is told (`escalate_channel`), if anywhere.
    pub slack_channel: Option<String>,
    /// Where Teams is told (`escalate_conversation`), if anywhere.
    pub teams_conversation: Option<String>,
}

impl Escalation {
    /// Whether a request made at `created` is due to escalate at `now`.
    pub fn due(&self, created: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let after = chrono::Duration::from_std(self.after).unwrap_or(chrono::TimeDelta::MAX);
        created
            .checked_add_signed(after)
            .is_some_and(|at| now >= at)
    }

    /// The approver set after escalation: `approvers` then the added people
    /// not already in it, in order. An empty set means anyone may approve,
    /// which escalation must not narrow: it stays empty.
    pub fn widen(&self, approvers: &[Principal]) -> Vec<Principal> {
        if approvers.is_empty() {
            return Vec::new();
        }
        let mut out = approvers.to_vec();
        for p in &self.to {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// The conversation a channel tells of the escalation in
    /// (`escalate_channel` for Slack, `escalate_conversation` for Teams),
    /// if the rule names one for it.
    pub fn notice_to(&self, channel: &str) -> Option<&str> {
        match channel {
            "slack" => self.slack_channel.as_deref(),
            "teams" => self.teams_conversation.as_deref(),
            _ => None,
        }
    }

    /// How the message names the targets: groups by name, users by id.
    pub fn label(&self) -> String {
        self.names
            .iter()
            .map(|n| n.strip_prefix("group:").unwrap_or(n))
            .map(|n| n.strip_prefix("user:").unwrap_or(n))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Principal {
        Principal::parse(s).unwrap()
    }

    fn oncall() -> Escalation {
        Escalation {
            after: Duration::from_secs(30 * 60),
            to: vec![p("user:carol@example.com"), p("user:bob@example.com")],
            names: vec!["group:oncall".into(), "user:bob@example.com".into()],
            slack_channel: None,
            teams_conversation: None,
        }
    }

    #[test]
    fn escalation_is_due_once_escalate_after_has_passed_since_creation() {
        let created = "2026-01-01T10:00:00Z".parse().unwrap();
        let e = oncall();
        assert!(!e.due(created, "2026-01-01T10:29:59Z".parse().unwrap()));
        assert!(e.due(created, "2026-01-01T10:30:00Z".parse().unwrap()));
        assert!(e.due(created, "2026-01-02T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn widening_adds_the_targets_not_yet_approvers_after_the_named_ones() {
        let widened = oncall().widen(&[p("user:bob@example.com")]);
        assert_eq!(
            widened,
            vec![p("user:bob@example.com"), p("user:carol@example.com")]
        );
    }

    #[test]
    fn widening_never_narrows_a_rule_that_lets_anyone_approve() {
        assert!(oncall().widen(&[]).is_empty());
    }

    #[test]
    fn each_channel_tells_of_an_escalation_only_where_the_rule_says() {
        let mut e = oncall();
        assert_eq!(e.notice_to("slack"), None);
        e.slack_channel = Some("C0ONCALL".into());
        e.teams_conversation = Some("19:oncall@thread.tacv2".into());
        assert_eq!(e.notice_to("slack"), Some("C0ONCALL"));
        assert_eq!(e.notice_to("teams"), Some("19:oncall@thread.tacv2"));
        assert_eq!(e.notice_to("console"), None);
    }

    #[test]
    fn the_label_names_groups_and_users_without_their_prefix() {
        assert_eq!(oncall().label(), "oncall, bob@example.com");
    }
}
