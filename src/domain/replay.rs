//! Rebuilding a request's state from its audit events.
//!
//! The trail is the evidence; `approval_requests` and `decisions` are a cache
//! of it that the API serves and the decision rules read. Anyone with write
//! access to the SQLite file can edit that cache without touching the chain,
//! so the store folds a request's events into the state its row must hold
//! ([`replay`]) and compares the two ([`differences`]) before it serves or
//! acts on the row, and `audit verify` does the same for every request.
//!
//! A state is a flat map from field name to JSON value, so the comparison is
//! generic and each differing field can be named. The fields are the ones the
//! events carry: `request.created` (content, requester, key, expiry,
//! callback, payload hash), `policy.evaluated` (rule, version, quorum,
//! approvers, on_expiry), `decision.approve|deny` (who, comment, channel,
//! when) and the final `request.*` event (status, by, reason, when).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One event as the fold needs it.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub kind: &'a str,
    pub ts: &'a str,
    pub actor: &'a str,
    pub data: &'a Value,
}

/// Field name → value, for every field the trail determines.
pub type State = BTreeMap<&'static str, Value>;

/// Fields `request.created` sets, with the event's key for each.
const CREATED: [(&str, &str); 13] = [
    ("action", "action"),
    ("resource", "resource"),
    ("summary", "summary"),
    ("justification", "justification"),
    ("details", "details"),
    ("risk", "risk"),
    ("requester", "requester"),
    ("on_behalf_of", "on_behalf_of"),
    ("key_id", "key_id"),
    ("key_owner", "key_owner"),
    ("callback_url", "callback_url"),
    ("expires_at", "expires_at"),
    ("payload_sha256", "payload_sha256"),
];

/// Fields `policy.evaluated` sets.
const EVALUATED: [(&str, &str); 5] = [
    ("policy_rule", "rule"),
    ("policy_version", "version"),
    ("required_approvals", "required_approvals"),
    ("approvers", "approvers"),
    ("on_expiry", "on_expiry"),
];

/// Every field a replayed state has, in the order they are reported.
pub fn field_names() -> impl Iterator<Item = &'static str> {
    CREATED
        .iter()
        .map(|(f, _)| *f)
        .chain(["created_at"])
        .chain(EVALUATED.iter().map(|(f, _)| *f))
        .chain(["status", "decided_at", "decided_by", "reason", "decisions"])
}

/// The final status a `request.*` event kind stands for.
fn final_status(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "request.approved" => "approved",
        "request.denied" => "denied",
        "request.cancelled" => "cancelled",
        "request.expired" => "expired",
        _ => return None,
    })
}

fn get(data: &Value, key: &str) -> Value {
    data.get(key).cloned().unwrap_or(Value::Null)
}

/// Folds a request's events, oldest first, into the state its row must
/// hold. Events that do not change the state (`decision.blocked`,
/// deliveries) are skipped. Fails when the events cannot describe a
/// request: none is `request.created`, it is not the first, or a second
/// final event follows the first.
pub fn replay(events: &[EventRef<'_>]) -> Result<State, String> {
    let mut it = events.iter();
    let created = it
        .next()
        .filter(|e| e.kind == "request.created")
        .ok_or("the request has no request.created event first")?;
    let mut s = State::new();
    for (field, key) in CREATED {
        s.insert(field, get(created.data, key));
    }
    s.insert("created_at", json!(created.ts));
    for (field, _) in EVALUATED {
        s.insert(field, Value::Null);
    }
    s.insert("status", json!("pending"));
    for f in ["decided_at", "decided_by", "reason"] {
        s.insert(f, Value::Null);
    }
    let mut decisions = Vec::new();
    let mut final_seen = false;
    for e in it {
        match e.kind {
            "policy.evaluated" => {
                for (field, key) in EVALUATED {
                    s.insert(field, get(e.data, key));
                }
            }
            "decision.approve" | "decision.deny" => decisions.push(json!({
                "principal": e.actor,
                "verdict": get(e.data, "verdict"),
                "comment": get(e.data, "comment"),
                "channel": get(e.data, "channel"),
                "at": e.ts,
            })),
            kind => {
                let Some(status) = final_status(kind) else {
                    continue;
                };
                if final_seen {
                    return Err(format!("a second final event ({kind}) follows the first"));
                }
                final_seen = true;
                // Expiry records the outcome it chose (`on_expiry: approve`
                // ends as approved); the other final events are their status.
                let status = match (kind, e.data.get("outcome").and_then(Value::as_str)) {
                    ("request.expired", Some(outcome)) => json!(outcome),
                    _ => json!(status),
                };
                let by = match e.data.get("by") {
                    Some(Value::String(b)) => json!(b),
                    // Expiry is decided by the system, which is its actor.
                    _ => json!(e.actor),
                };
                // Cancellation carries no reason; the writer derives it from `by`.
                let reason = match e.data.get("reason") {
                    Some(Value::String(r)) => json!(r),
                    _ if kind == "request.cancelled" => {
                        json!(format!("cancelled by {}", by.as_str().unwrap_or_default()))
                    }
                    _ => Value::Null,
                };
                s.insert("status", status);
                s.insert("decided_at", json!(e.ts));
                s.insert("decided_by", by);
                s.insert("reason", reason);
            }
        }
    }
    s.insert("decisions", Value::Array(decisions));
    Ok(s)
}

/// The fields whose stored value differs from the replayed one, in report
/// order. A field the stored state lacks counts as null.
pub fn differences(expected: &State, stored: &State) -> Vec<&'static str> {
    field_names()
        .filter(|f| {
            let a = expected.get(f).unwrap_or(&Value::Null);
            let b = stored.get(f).unwrap_or(&Value::Null);
            a != b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ev(&'static str, &'static str, &'static str, Value);

    fn refs(evs: &[Ev]) -> Vec<EventRef<'_>> {
        evs.iter()
            .map(|Ev(kind, ts, actor, data)| EventRef {
                kind,
                ts,
                actor,
                data,
            })
            .collect()
    }

    fn created() -> Ev {
        Ev(
            "request.created",
            "2026-01-01T00:00:00.000Z",
            "agent:bot",
            json!({
                "action": "db.export", "resource": "prod/x", "summary": "S", "justification": null,
                "details": {"rows": 1}, "risk": "high", "requester": "agent:bot", "on_behalf_of": null,
                "key_id": "k", "key_owner": "user:alice@example.com", "callback_url": null,
                "expires_at": "2026-01-01T00:15:00.000Z", "payload_sha256": "ab", "idempotency_key": null,
            }),
        )
    }

    fn evaluated() -> Ev {
        Ev(
            "policy.evaluated",
            "2026-01-01T00:00:00.000Z",
            "system:countersign",
            json!({"rule": "default", "version": "v1", "effect": "require_approval",
                   "required_approvals": 1, "approvers": [], "on_expiry": "deny"}),
        )
    }

    #[test]
    fn a_created_request_replays_as_pending_with_its_content() {
        let evs = [created(), evaluated()];
        let s = replay(&refs(&evs)).unwrap();
        assert_eq!(s["status"], "pending");
        assert_eq!(s["summary"], "S");
        assert_eq!(s["key_owner"], "user:alice@example.com");
        assert_eq!(s["required_approvals"], 1);
        assert_eq!(s["created_at"], "2026-01-01T00:00:00.000Z");
        assert_eq!(s["decisions"], json!([]));
    }

    #[test]
    fn a_denial_replays_as_denied_with_its_decision() {
        let evs = [
            created(),
            evaluated(),
            Ev(
                "decision.blocked",
                "2026-01-01T00:01:00.000Z",
                "user:alice@example.com",
                json!({}),
            ),
            Ev(
                "decision.deny",
                "2026-01-01T00:02:00.000Z",
                "user:bob@example.com",
                json!({"verdict": "deny", "comment": "no", "channel": "api"}),
            ),
            Ev(
                "request.denied",
                "2026-01-01T00:02:00.000Z",
                "user:bob@example.com",
                json!({"by": "user:bob@example.com", "reason": "denied by user:bob@example.com"}),
            ),
        ];
        let s = replay(&refs(&evs)).unwrap();
        assert_eq!(s["status"], "denied");
        assert_eq!(s["decided_by"], "user:bob@example.com");
        assert_eq!(s["decided_at"], "2026-01-01T00:02:00.000Z");
        assert_eq!(
            s["decisions"],
            json!([{"principal": "user:bob@example.com", "verdict": "deny", "comment": "no",
                    "channel": "api", "at": "2026-01-01T00:02:00.000Z"}])
        );
    }

    #[test]
    fn expiry_and_cancellation_replay_their_outcome_and_reason() {
        let expired = [
            created(),
            evaluated(),
            Ev(
                "request.expired",
                "2026-01-01T00:15:00.000Z",
                "system:countersign",
                json!({"outcome": "approved", "reason": "expired; rule 'r' approves on expiry"}),
            ),
        ];
        let s = replay(&refs(&expired)).unwrap();
        assert_eq!(
            (&s["status"], &s["decided_by"]),
            (&json!("approved"), &json!("system:countersign"))
        );
        let cancelled = [
            created(),
            evaluated(),
            Ev(
                "request.cancelled",
                "2026-01-01T00:03:00.000Z",
                "agent:bot",
                json!({"by": "agent:bot"}),
            ),
        ];
        let s = replay(&refs(&cancelled)).unwrap();
        assert_eq!(s["reason"], "cancelled by agent:bot");
    }

    #[test]
    fn each_differing_field_is_named() {
        let evs = [created(), evaluated()];
        let expected = replay(&refs(&evs)).unwrap();
        let mut stored = expected.clone();
        assert!(differences(&expected, &stored).is_empty());
        stored.insert("status", json!("approved"));
        stored.insert("key_owner", Value::Null);
        stored.insert("summary", json!("forged"));
        assert_eq!(
            differences(&expected, &stored),
            ["summary", "key_owner", "status"]
        );
    }

    #[test]
    fn events_that_cannot_describe_a_request_are_refused() {
        assert!(replay(&[]).is_err());
        let evs = [evaluated(), created()];
        assert!(replay(&refs(&evs)).is_err());
        let twice = [
            created(),
            Ev(
                "request.cancelled",
                "t",
                "agent:bot",
                json!({"by": "agent:bot"}),
            ),
            Ev(
                "request.cancelled",
                "t",
                "agent:bot",
                json!({"by": "agent:bot"}),
            ),
        ];
        assert!(replay(&refs(&twice)).is_err());
    }
}
