//! The decision rules. Every channel (API, Slack, Teams) records a decision
//! by calling [`decide`]; nothing else decides whether a click counts.
//!
//! The function is pure: it sees the request as stored, the decisions
//! already recorded and the new attempt, and says what the attempt does.
//! The writer runs it inside the transaction that records the result, so two
//! clicks at the same moment are judged one after the other, never both
//! against the same old state.

use chrono::{DateTime, Utc};

use super::principal::Principal;
use super::request::{Status, Verdict};

/// What the rules need to know about a request.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    pub status: Status,
    pub requester: &'a Principal,
    pub on_behalf_of: Option<&'a Principal>,
    pub key_owner: Option<&'a Principal>,
    pub required_approvals: u32,
    /// Empty means any human may decide.
    pub approvers: &'a [Principal],
    pub decided_by: Option<&'a str>,
    pub decided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct PriorDecision<'a> {
    pub principal: &'a Principal,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfRelation {
    Requester,
    OnBehalfOf,
    KeyOwner,
}

/// Why an attempt does not count. Each maps to a clear message and is
/// audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request is already final; says who decided and when.
    AlreadyFinal {
        status: Status,
        decided_by: Option<String>,
        decided_at: Option<DateTime<Utc>>,
    },
    SelfApproval(SelfRelation),
    NotHuman,
    NotAnApprover,
    AlreadyApproved,
    CommentRequired,
}

impl Refusal {
    /// A stable code for audit events and API problem types.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::AlreadyFinal { .. } => "already_final",
            Refusal::SelfApproval(_) => "self_approval",
            Refusal::NotHuman => "not_human",
            Refusal::NotAnApprover => "not_an_approver",
            Refusal::AlreadyApproved => "already_approved",
            Refusal::CommentRequired => "comment_required",
        }
    }

    /// A sentence for the person who clicked.
    pub fn message(&self) -> String {
        match self {
            Refusal::AlreadyFinal { status, decided_by, decided_at } => {
                let by = decided_by.as_deref().unwrap_or("the service");
                let at = decided_at.map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M:%S UTC"))).unwrap_or_default();
                format!("This request is already {status}: decided by {by}{at}.")
            }
            Refusal::SelfApproval(SelfRelation::Requester) => {
                "You requested this action, so you cannot decide on it: someone else must.".into()
            }
            Refusal::SelfApproval(SelfRelation::OnBehalfOf) => {
                "This action is requested on your behalf, so you cannot decide on it: someone else must.".into()
            }
            Refusal::SelfApproval(SelfRelation::KeyOwner) => {
                "You own the API key that requested this action, so you cannot decide on it: someone else must.".into()
            }
            Refusal::NotHuman => "Only people decide: agents and services never approve or deny.".into(),
            Refusal::NotAnApprover => "You are not one of the approvers the policy names for this request.".into(),
            Refusal::AlreadyApproved => "You have already approved this request; one person counts once.".into(),
            Refusal::CommentRequired => "A denial needs a reason: say why in the comment.".into(),
        }
    }
}

/// What a counted decision does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Recorded; the request stays pending with this many distinct approvals.
    Counted { approvals: u32 },
    /// This decision completed the quorum.
    Approved,
    /// One allowed deny ends the request.
    Denied,
}

impl Effect {
    pub fn final_status(self) -> Option<Status> {
        match self {
            Effect::Counted { .. } => None,
            Effect::Approved => Some(Status::Approved),
            Effect::Denied => Some(Status::Denied),
        }
    }
}

/// Judges one decision attempt. Order matters: a final request refuses
/// everyone with who decided; then identity rules; then input rules.
pub fn decide(
    request: &RequestFacts<'_>,
    prior: &[PriorDecision<'_>],
    who: &Principal,
    verdict: Verdict,
    comment: Option<&str>,
) -> Result<Effect, Refusal> {
    if request.status.is_final() {
        return Err(Refusal::AlreadyFinal {
            status: request.status,
            decided_by: request.decided_by.map(str::to_string),
            decided_at: request.decided_at,
        });
    }
    if !who.is_human() {
        return Err(Refusal::NotHuman);
    }
    if who == request.requester {
        return Err(Refusal::SelfApproval(SelfRelation::Requester));
    }
    if request.on_behalf_of == Some(who) {
        return Err(Refusal::SelfApproval(SelfRelation::OnBehalfOf));
    }
    if request.key_owner == Some(who) {
        return Err(Refusal::SelfApproval(SelfRelation::KeyOwner));
    }
    if !request.approvers.is_empty() && !request.approvers.contains(who) {
        return Err(Refusal::NotAnApprover);
    }
    match verdict {
        Verdict::Deny => {
            if comment.is_none_or(|c| c.trim().is_empty()) {
                return Err(Refusal::CommentRequired);
            }
            Ok(Effect::Denied)
        }
        Verdict::Approve => {
            let mut approvers: Vec<&Principal> = prior
                .iter()
                .filter(|d| d.verdict == Verdict::Approve)
                .map(|d| d.principal)
                .collect();
            if approvers.contains(&who) {
                return Err(Refusal::AlreadyApproved);
            }
            approvers.push(who);
            approvers.sort();
            approvers.dedup();
            let count = approvers.len() as u32;
            if count >= request.required_approvals {
                Ok(Effect::Approved)
            } else {
                Ok(Effect::Counted { approvals: count })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Principal {
        Principal::parse(s).unwrap()
    }

    struct Fixture {
        requester: Principal,
        alice: Principal,
        owner: Principal,
        approvers: Vec<Principal>,
    }

    fn fixture() -> Fixture {
        Fixture {
            requester: p("agent:deploy-bot"),
            alice: p("user:alice@example.com"),
            owner: p("user:owner@example.com"),
            approvers: vec![],
        }
    }

    fn facts<'a>(f: &'a Fixture, required: u32) -> RequestFacts<'a> {
        RequestFacts {
            status: Status::Pending,
            requester: &f.requester,
            on_behalf_of: Some(&f.alice),
            key_owner: Some(&f.owner),
            required_approvals: required,
            approvers: &f.approvers,
            decided_by: None,
            decided_at: None,
        }
    }

    #[test]
    fn a_human_who_is_not_involved_approves() {
        let f = fixture();
        let bob = p("user:bob@example.com");
        assert_eq!(
            decide(&facts(&f, 1), &[], &bob, Verdict::Approve, None),
            Ok(Effect::Approved)
        );
    }

    #[test]
    fn the_human_an_agent_acts_for_cannot_approve() {
        let f = fixture();
        assert_eq!(
            decide(&facts(&f, 1), &[], &f.alice, Verdict::Approve, None),
            Err(Refusal::SelfApproval(SelfRelation::OnBehalfOf))
        );
    }

    #[test]
    fn the_owner_of_the_requesting_key_cannot_approve() {
        let f = fixture();
        assert_eq!(
            decide(&facts(&f, 1), &[], &f.owner, Verdict::Approve, None),
            Err(Refusal::SelfApproval(SelfRelation::KeyOwner))
        );
    }

    #[test]
    fn a_human_requester_cannot_approve_their_own_request() {
        let mut f = fixture();
        f.requester = p("user:dana@example.com");
        let dana = p("user:Dana@Example.com");
        assert_eq!(
            decide(&facts(&f, 1), &[], &dana, Verdict::Approve, None),
            Err(Refusal::SelfApproval(SelfRelation::Requester))
        );
    }

    #[test]
    fn agents_and_services_never_decide() {
        let f = fixture();
        for who in ["agent:other", "service:ci"] {
            assert_eq!(
                decide(&facts(&f, 1), &[], &p(who), Verdict::Approve, None),
                Err(Refusal::NotHuman)
            );
        }
    }

    #[test]
    fn quorum_needs_distinct_people_and_a_person_counts_once() {
        let f = fixture();
        let bob = p("user:bob@example.com");
        let carol = p("user:carol@example.com");
        let prior = [PriorDecision {
            principal: &bob,
            verdict: Verdict::Approve,
        }];
        assert_eq!(
            decide(&facts(&f, 2), &[], &bob, Verdict::Approve, None),
            Ok(Effect::Counted { approvals: 1 })
        );
        assert_eq!(
            decide(&facts(&f, 2), &prior, &bob, Verdict::Approve, None),
            Err(Refusal::AlreadyApproved)
        );
        assert_eq!(
            decide(&facts(&f, 2), &prior, &carol, Verdict::Approve, None),
            Ok(Effect::Approved)
        );
    }

    #[test]
    fn where_a_rule_names_approvers_only_they_decide() {
        let mut f = fixture();
        f.approvers = vec![p("user:bob@example.com")];
        assert_eq!(
            decide(
                &facts(&f, 1),
                &[],
                &p("user:eve@example.com"),
                Verdict::Approve,
                None
            ),
            Err(Refusal::NotAnApprover)
        );
        assert_eq!(
            decide(
                &facts(&f, 1),
                &[],
                &p("user:bob@example.com"),
                Verdict::Approve,
                None
            ),
            Ok(Effect::Approved)
        );
    }

    #[test]
    fn one_allowed_deny_ends_the_request_and_needs_a_reason() {
        let f = fixture();
        let bob = p("user:bob@example.com");
        assert_eq!(
            decide(&facts(&f, 3), &[], &bob, Verdict::Deny, Some("  ")),
            Err(Refusal::CommentRequired)
        );
        assert_eq!(
            decide(&facts(&f, 3), &[], &bob, Verdict::Deny, Some("too broad")),
            Ok(Effect::Denied)
        );
    }

    #[test]
    fn final_states_never_change_and_say_who_decided() {
        let f = fixture();
        let mut r = facts(&f, 1);
        r.status = Status::Approved;
        r.decided_by = Some("user:bob@example.com");
        let refusal = decide(
            &r,
            &[],
            &p("user:carol@example.com"),
            Verdict::Deny,
            Some("no"),
        )
        .unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::AlreadyFinal {
                status: Status::Approved,
                ..
            }
        ));
        assert!(refusal.message().contains("user:bob@example.com"));
    }
}
