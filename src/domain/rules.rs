//! The decision rules. Every channel (API, Slack, Teams) records a decision
//! by calling [`decide`]; nothing else decides whether a click counts.
//!
//! The function is pure: it sees the request as stored, the decisions
//! already recorded and the new attempt, and says what the attempt does.
//! The writer runs it inside the transaction that records the result, so two
//! clicks at the same moment are judged one after the other, never both
//! against the same old state.

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

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
    /// The deadline. A decision committed at or after it does not count,
    /// whether or not the sweeper has expired the request yet.
    pub expires_at: DateTime<Utc>,
    /// The hash of what approvers are shown.
    pub payload_sha256: &'a str,
    /// The canonical resource, which a step-up decision must re-type.
    pub resource: &'a str,
    /// The rule said `step_up: console`: only a console decision with the
    /// resource re-typed counts.
    pub step_up: bool,
}

#[derive(Debug, Clone)]
pub struct PriorDecision<'a> {
    pub principal: &'a Principal,
    pub verdict: Verdict,
    /// The owner of the API key the decision was made with; that person
    /// decided too, so they count toward the quorum once, like the principal.
    pub key_owner: Option<&'a Principal>,
}

/// One attempt to decide, as the writer is about to commit it.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub who: &'a Principal,
    /// The owner of the API key the attempt is made with (API decisions);
    /// chat decisions have none.
    pub key_owner: Option<&'a Principal>,
    pub verdict: Verdict,
    pub comment: Option<&'a str>,
    /// The payload hash the decider says they were shown, if they say.
    pub payload_sha256: Option<&'a str>,
    /// The writer's commit time: the time the decision would take effect.
    pub now: DateTime<Utc>,
    /// The surface the attempt came through (`api`, `slack`, `teams`, `console`).
    pub channel: &'a str,
    /// The resource as the decider re-typed it (the console's step-up form).
    pub confirmation: Option<&'a str>,
    /// When the decider last proved who they are to an identity provider,
    /// where the surface knows (console sessions signed in with OIDC).
    pub signed_in_at: Option<DateTime<Utc>>,
}

/// How recent an identity provider's sign-in must be for a step-up
/// decision made with it (the console asks the provider for `max_age`).
pub const STEP_UP_MAX_AGE_SECS: i64 = 300;

/// The only surface on which a step-up request can be decided.
pub const STEP_UP_CHANNEL: &str = "console";

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
    /// The deadline passed before the decision could take effect.
    Expired {
        expires_at: DateTime<Utc>,
    },
    /// The decider was shown another payload than the request's.
    PayloadMismatch {
        given: String,
        expected: String,
    },
    SelfApproval(SelfRelation),
    /// The owner of the deciding key is involved in the request.
    OwnerInvolved {
        owner: Principal,
        relation: SelfRelation,
    },
    NotHuman,
    NotAnApprover,
    AlreadyApproved,
    /// A person already counted (as a decider or as the owner of a deciding
    /// key) would count a second time.
    SamePerson {
        person: Principal,
    },
    CommentRequired,
    /// The rule asks for a console decision (`step_up: console`).
    StepUpRequired,
    /// A step-up decision without the resource re-typed exactly.
    ResourceNotConfirmed,
    /// A step-up decision on a provider sign-in older than
    /// [`STEP_UP_MAX_AGE_SECS`].
    SignInTooOld,
}

impl Refusal {
    /// A stable code for audit events and API problem types.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::AlreadyFinal { .. } => "already_final",
            Refusal::Expired { .. } => "expired",
            Refusal::PayloadMismatch { .. } => "payload_mismatch",
            Refusal::SelfApproval(_) | Refusal::OwnerInvolved { .. } => "self_approval",
            Refusal::NotHuman => "not_human",
            Refusal::NotAnApprover => "not_an_approver",
            Refusal::AlreadyApproved => "already_approved",
            Refusal::SamePerson { .. } => "same_person",
            Refusal::CommentRequired => "comment_required",
            Refusal::StepUpRequired => "step_up_required",
            Refusal::ResourceNotConfirmed => "resource_not_confirmed",
            Refusal::SignInTooOld => "sign_in_too_old",
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
            Refusal::Expired { expires_at } => format!(
                "This request expired at {}: a decision at or after its deadline does not count.",
                crate::clock::fmt(*expires_at)
            ),
            Refusal::PayloadMismatch { given, expected } => format!(
                "payload_sha256 {given} is not the hash of this request's payload ({expected}): decide on what you were shown."
            ),
            Refusal::SelfApproval(SelfRelation::Requester) => {
                "You requested this action, so you cannot decide on it: someone else must.".into()
            }
            Refusal::SelfApproval(SelfRelation::OnBehalfOf) => {
                "This action is requested on your behalf, so you cannot decide on it: someone else must.".into()
            }
            Refusal::SelfApproval(SelfRelation::KeyOwner) => {
                "You own the API key that requested this action, so you cannot decide on it: someone else must.".into()
            }
            Refusal::OwnerInvolved { owner, relation } => {
                let how = match relation {
                    SelfRelation::Requester => "requested this action",
                    SelfRelation::OnBehalfOf => "is the person this action is requested for",
                    SelfRelation::KeyOwner => "owns the API key that requested this action",
                };
                format!("Your API key is owned by {owner}, who {how}, so it cannot decide on it: someone else must.")
            }
            Refusal::NotHuman => "Only people decide: agents and services never approve or deny.".into(),
            Refusal::NotAnApprover => "You are not one of the approvers the policy names for this request.".into(),
            Refusal::AlreadyApproved => "You have already approved this request; one person counts once.".into(),
            Refusal::SamePerson { person } => format!(
                "{person} has already counted toward this request (as an approver or as the owner of an approver's key); one person counts once."
            ),
            Refusal::CommentRequired => "A denial needs a reason: say why in the comment.".into(),
            Refusal::StepUpRequired => "This request needs a step-up decision: open it in the Countersign console, re-type the resource and decide there.".into(),
            Refusal::ResourceNotConfirmed => "This request needs a step-up decision: re-type its resource exactly as shown to confirm what you decide on.".into(),
            Refusal::SignInTooOld => "This request needs a step-up decision with a recent sign-in: sign in again with your identity provider, then decide.".into(),
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

/// Which of the people involved in the request `p` is, if any.
fn involvement(request: &RequestFacts<'_>, p: &Principal) -> Option<SelfRelation> {
    if p == request.requester {
        Some(SelfRelation::Requester)
    } else if request.on_behalf_of == Some(p) {
        Some(SelfRelation::OnBehalfOf)
    } else if request.key_owner == Some(p) {
        Some(SelfRelation::KeyOwner)
    } else {
        None
    }
}

/// Whether `who` may decide on the request at all: a person, not involved
/// in it, and one of its approvers if the policy names them. [`decide`]
/// applies it to every attempt; the console's inbox uses it to list what
/// someone may decide, so the two cannot disagree.
pub fn eligible(request: &RequestFacts<'_>, who: &Principal) -> Result<(), Refusal> {
    if !who.is_human() {
        return Err(Refusal::NotHuman);
    }
    if let Some(relation) = involvement(request, who) {
        return Err(Refusal::SelfApproval(relation));
    }
    if !request.approvers.is_empty() && !request.approvers.contains(who) {
        return Err(Refusal::NotAnApprover);
    }
    Ok(())
}

/// Judges one decision attempt. Order matters: a final request refuses
/// everyone with who decided, then a passed deadline, then a payload the
/// decider was not shown; then identity rules; then input rules.
pub fn decide(
    request: &RequestFacts<'_>,
    prior: &[PriorDecision<'_>],
    attempt: &Attempt<'_>,
) -> Result<Effect, Refusal> {
    let who = attempt.who;
    if request.status.is_final() {
        return Err(Refusal::AlreadyFinal {
            status: request.status,
            decided_by: request.decided_by.map(str::to_string),
            decided_at: request.decided_at,
        });
    }
    // The row may still say pending (the sweeper runs just after the
    // deadline); the deadline, not the sweeper, decides.
    if attempt.now >= request.expires_at {
        return Err(Refusal::Expired {
            expires_at: request.expires_at,
        });
    }
    if let Some(given) = attempt.payload_sha256
        && !bool::from(given.as_bytes().ct_eq(request.payload_sha256.as_bytes()))
    {
        return Err(Refusal::PayloadMismatch {
            given: given.to_string(),
            expected: request.payload_sha256.to_string(),
        });
    }
    if let Some(owner) = attempt.key_owner
        && who.is_human()
        && involvement(request, who).is_none()
        && let Some(relation) = involvement(request, owner)
    {
        return Err(Refusal::OwnerInvolved {
            owner: owner.clone(),
            relation,
        });
    }
    eligible(request, who)?;
    if request.step_up {
        if attempt.channel != STEP_UP_CHANNEL {
            return Err(Refusal::StepUpRequired);
        }
        let typed = attempt.confirmation.map(str::trim).unwrap_or_default();
        if !bool::from(typed.as_bytes().ct_eq(request.resource.as_bytes())) {
            return Err(Refusal::ResourceNotConfirmed);
        }
        if attempt
            .signed_in_at
            .is_some_and(|t| (attempt.now - t).num_seconds() > STEP_UP_MAX_AGE_SECS)
        {
            return Err(Refusal::SignInTooOld);
        }
    }
    match attempt.verdict {
        Verdict::Deny => {
            if attempt.comment.is_none_or(|c| c.trim().is_empty()) {
                return Err(Refusal::CommentRequired);
            }
            Ok(Effect::Denied)
        }
        Verdict::Approve => {
            let approvals = prior.iter().filter(|d| d.verdict == Verdict::Approve);
            if approvals.clone().any(|d| d.principal == who) {
                return Err(Refusal::AlreadyApproved);
            }
            // Each approval stands for its principal and its key's owner;
            // it counts only if none of them has counted already.
            let mut counted: Vec<&Principal> = Vec::new();
            let mut count = 0u32;
            for d in approvals {
                let people = std::iter::once(d.principal).chain(d.key_owner);
                if people.clone().all(|p| !counted.contains(&p)) {
                    count += 1;
                }
                counted.extend(people);
            }
            if let Some(person) = std::iter::once(who)
                .chain(attempt.key_owner)
                .find(|p| counted.contains(p))
            {
                return Err(Refusal::SamePerson {
                    person: person.clone(),
                });
            }
            count += 1;
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
            expires_at: deadline(),
            payload_sha256: HASH,
            resource: "prod/users",
            step_up: false,
        }
    }

    const HASH: &str = "ab12";

    fn deadline() -> DateTime<Utc> {
        "2026-01-31T12:00:00.000Z".parse().unwrap()
    }

    fn before_deadline() -> DateTime<Utc> {
        deadline() - chrono::Duration::milliseconds(1)
    }

    fn attempt<'a>(who: &'a Principal, verdict: Verdict, comment: Option<&'a str>) -> Attempt<'a> {
        Attempt {
            who,
            key_owner: None,
            verdict,
            comment,
            payload_sha256: None,
            now: before_deadline(),
            channel: "slack",
            confirmation: None,
            signed_in_at: None,
        }
    }

    /// The common case: a chat-style attempt (no key owner, no hash) just
    /// before the deadline.
    fn judge(
        r: &RequestFacts<'_>,
        prior: &[PriorDecision<'_>],
        who: &Principal,
        verdict: Verdict,
        comment: Option<&str>,
    ) -> Result<Effect, Refusal> {
        decide(r, prior, &attempt(who, verdict, comment))
    }

    #[test]
    fn a_human_who_is_not_involved_approves() {
        let f = fixture();
        let bob = p("user:bob@example.com");
        assert_eq!(
            judge(&facts(&f, 1), &[], &bob, Verdict::Approve, None),
            Ok(Effect::Approved)
        );
    }

    #[test]
    fn the_human_an_agent_acts_for_cannot_approve() {
        let f = fixture();
        assert_eq!(
            judge(&facts(&f, 1), &[], &f.alice, Verdict::Approve, None),
            Err(Refusal::SelfApproval(SelfRelation::OnBehalfOf))
        );
    }

    #[test]
    fn the_owner_of_the_requesting_key_cannot_approve() {
        let f = fixture();
        assert_eq!(
            judge(&facts(&f, 1), &[], &f.owner, Verdict::Approve, None),
            Err(Refusal::SelfApproval(SelfRelation::KeyOwner))
        );
    }

    #[test]
    fn a_human_requester_cannot_approve_their_own_request() {
        let mut f = fixture();
        f.requester = p("user:dana@example.com");
        let dana = p("user:Dana@Example.com");
        assert_eq!(
            judge(&facts(&f, 1), &[], &dana, Verdict::Approve, None),
            Err(Refusal::SelfApproval(SelfRelation::Requester))
        );
    }

    #[test]
    fn agents_and_services_never_judge() {
        let f = fixture();
        for who in ["agent:other", "service:ci"] {
            assert_eq!(
                judge(&facts(&f, 1), &[], &p(who), Verdict::Approve, None),
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
            key_owner: None,
        }];
        assert_eq!(
            judge(&facts(&f, 2), &[], &bob, Verdict::Approve, None),
            Ok(Effect::Counted { approvals: 1 })
        );
        assert_eq!(
            judge(&facts(&f, 2), &prior, &bob, Verdict::Approve, None),
            Err(Refusal::AlreadyApproved)
        );
        assert_eq!(
            judge(&facts(&f, 2), &prior, &carol, Verdict::Approve, None),
            Ok(Effect::Approved)
        );
    }

    #[test]
    fn where_a_rule_names_approvers_only_they_judge() {
        let mut f = fixture();
        f.approvers = vec![p("user:bob@example.com")];
        assert_eq!(
            judge(
                &facts(&f, 1),
                &[],
                &p("user:eve@example.com"),
                Verdict::Approve,
                None
            ),
            Err(Refusal::NotAnApprover)
        );
        assert_eq!(
            judge(
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
            judge(&facts(&f, 3), &[], &bob, Verdict::Deny, Some("  ")),
            Err(Refusal::CommentRequired)
        );
        assert_eq!(
            judge(&facts(&f, 3), &[], &bob, Verdict::Deny, Some("too broad")),
            Ok(Effect::Denied)
        );
    }

    #[test]
    fn final_states_never_change_and_say_who_decided() {
        let f = fixture();
        let mut r = facts(&f, 1);
        r.status = Status::Approved;
        r.decided_by = Some("user:bob@example.com");
        let refusal = judge(
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

    #[test]
    fn a_key_owned_by_the_human_the_agent_acts_for_cannot_decide() {
        let f = fixture();
        let mallory = p("user:mallory@example.com");
        for (owner, relation) in [
            (&f.alice, SelfRelation::OnBehalfOf),
            (&f.owner, SelfRelation::KeyOwner),
        ] {
            let mut a = attempt(&mallory, Verdict::Approve, None);
            a.key_owner = Some(owner);
            assert_eq!(
                decide(&facts(&f, 1), &[], &a),
                Err(Refusal::OwnerInvolved {
                    owner: owner.clone(),
                    relation
                })
            );
        }
        let mut human = fixture();
        human.requester = p("user:dana@example.com");
        let dana = p("user:dana@example.com");
        let mut a = attempt(&mallory, Verdict::Deny, Some("no"));
        a.key_owner = Some(&dana);
        assert!(matches!(
            decide(&facts(&human, 1), &[], &a),
            Err(Refusal::OwnerInvolved {
                relation: SelfRelation::Requester,
                ..
            })
        ));
    }

    #[test]
    fn two_keys_owned_by_one_person_do_not_make_two_approvals() {
        let f = fixture();
        let mallory = p("user:mallory@example.com");
        let trent = p("user:trent@example.com");
        let victor = p("user:victor@example.com");
        let prior = [PriorDecision {
            principal: &mallory,
            verdict: Verdict::Approve,
            key_owner: Some(&victor),
        }];
        let mut a = attempt(&trent, Verdict::Approve, None);
        a.key_owner = Some(&victor);
        assert_eq!(
            decide(&facts(&f, 2), &prior, &a),
            Err(Refusal::SamePerson {
                person: victor.clone()
            })
        );
        // Victor himself, in chat, counted already through Mallory's key.
        assert_eq!(
            judge(&facts(&f, 2), &prior, &victor, Verdict::Approve, None),
            Err(Refusal::SamePerson {
                person: victor.clone()
            })
        );
        // Someone else entirely completes the quorum.
        assert_eq!(
            judge(&facts(&f, 2), &prior, &trent, Verdict::Approve, None),
            Ok(Effect::Approved)
        );
    }

    #[test]
    fn overlapping_approvals_already_recorded_count_once() {
        let f = fixture();
        let (m, t, v, w) = (
            p("user:m@example.com"),
            p("user:t@example.com"),
            p("user:v@example.com"),
            p("user:w@example.com"),
        );
        let prior = [
            PriorDecision {
                principal: &m,
                verdict: Verdict::Approve,
                key_owner: Some(&v),
            },
            PriorDecision {
                principal: &t,
                verdict: Verdict::Approve,
                key_owner: Some(&v),
            },
        ];
        assert_eq!(
            judge(&facts(&f, 3), &prior, &w, Verdict::Approve, None),
            Ok(Effect::Counted { approvals: 2 })
        );
    }

    #[test]
    fn a_decision_at_or_past_the_deadline_is_refused_as_expired() {
        let f = fixture();
        let bob = p("user:bob@example.com");
        for now in [deadline(), deadline() + chrono::Duration::milliseconds(3)] {
            let mut a = attempt(&bob, Verdict::Approve, None);
            a.now = now;
            assert_eq!(
                decide(&facts(&f, 1), &[], &a),
                Err(Refusal::Expired {
                    expires_at: deadline()
                })
            );
        }
        assert_eq!(
            judge(&facts(&f, 1), &[], &bob, Verdict::Approve, None),
            Ok(Effect::Approved)
        );
    }

    #[test]
    fn a_decision_on_another_payload_is_refused_and_one_without_a_hash_counts() {
        let f = fixture();
        let bob = p("user:bob@example.com");
        let mut a = attempt(&bob, Verdict::Approve, None);
        a.payload_sha256 = Some("ffff");
        assert_eq!(
            decide(&facts(&f, 1), &[], &a),
            Err(Refusal::PayloadMismatch {
                given: "ffff".into(),
                expected: HASH.into()
            })
        );
        a.payload_sha256 = Some(HASH);
        assert_eq!(decide(&facts(&f, 1), &[], &a), Ok(Effect::Approved));
    }

    #[test]
    fn a_step_up_request_is_decided_only_on_the_console_with_the_resource_retyped() {
        let f = fixture();
        let mut r = facts(&f, 1);
        r.step_up = true;
        let bob = p("user:bob@example.com");
        let chat = attempt(&bob, Verdict::Approve, None);
        assert_eq!(decide(&r, &[], &chat), Err(Refusal::StepUpRequired));
        let mut console = attempt(&bob, Verdict::Approve, None);
        console.channel = STEP_UP_CHANNEL;
        assert_eq!(
            decide(&r, &[], &console),
            Err(Refusal::ResourceNotConfirmed)
        );
        console.confirmation = Some("prod/user");
        assert_eq!(
            decide(&r, &[], &console),
            Err(Refusal::ResourceNotConfirmed)
        );
        console.confirmation = Some("prod/users");
        assert_eq!(decide(&r, &[], &console), Ok(Effect::Approved));
        // With a provider sign-in, it must be recent.
        console.signed_in_at =
            Some(before_deadline() - chrono::Duration::seconds(STEP_UP_MAX_AGE_SECS + 1));
        assert_eq!(decide(&r, &[], &console), Err(Refusal::SignInTooOld));
        console.signed_in_at = Some(before_deadline() - chrono::Duration::seconds(60));
        assert_eq!(decide(&r, &[], &console), Ok(Effect::Approved));
        // Identity rules still come first: the requester is told so, not sent to the console.
        let agent_side = attempt(&f.alice, Verdict::Approve, None);
        assert_eq!(
            decide(&r, &[], &agent_side),
            Err(Refusal::SelfApproval(SelfRelation::OnBehalfOf))
        );
    }
}
