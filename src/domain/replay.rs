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
//!
//! The rules are written once, in [`fold`], over any reading of an event's
//! data ([`EventData`]): a parsed [`Value`] for the per-load check, or
//! [`RawData`], the raw text of just the fields the fold reads, for
//! `audit verify`, which replays every request of the trail and cannot
//! afford to build a JSON tree per event.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// One event as the fold needs it, its data read through `D`.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a, D> {
    pub kind: &'a str,
    pub ts: &'a str,
    pub actor: &'a str,
    pub data: D,
}

/// An event with its data parsed as JSON.
pub type EventRef<'a> = Event<'a, &'a Value>;

/// How the fold reads an event's data.
pub trait EventData<'a> {
    /// A field's value as the replayed state holds it.
    type Field: Clone;
    /// The value of `key`, JSON null when absent.
    fn field(&self, key: &str) -> Self::Field;
    /// The value of `key` when it is a JSON string.
    fn string(&self, key: &str) -> Option<Cow<'a, str>>;
    /// A string the fold makes (a status, a time, an actor).
    fn text(s: Cow<'a, str>) -> Self::Field;
    fn null() -> Self::Field;
}

impl<'a> EventData<'a> for &'a Value {
    type Field = Value;
    fn field(&self, key: &str) -> Value {
        self.get(key).cloned().unwrap_or(Value::Null)
    }
    fn string(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).and_then(Value::as_str).map(Cow::Borrowed)
    }
    fn text(s: Cow<'a, str>) -> Value {
        Value::String(s.into_owned())
    }
    fn null() -> Value {
        Value::Null
    }
}

/// The top-level fields of an event's data that the fold reads, each as
/// its raw JSON text borrowed from the stored data; every other field is
/// skipped unparsed. Data that is not an object, or names a field twice
/// (which a parsed [`Value`] would resolve to the last), does not parse:
/// the caller then replays through [`Value`], which decides.
#[derive(Debug, Default, Deserialize)]
pub struct RawData<'a> {
    #[serde(borrow, default)]
    action: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
    #[serde(borrow, default)]
    summary: Option<&'a RawValue>,
    #[serde(borrow, default)]
    justification: Option<&'a RawValue>,
    #[serde(borrow, default)]
    details: Option<&'a RawValue>,
    #[serde(borrow, default)]
    risk: Option<&'a RawValue>,
    #[serde(borrow, default)]
    requester: Option<&'a RawValue>,
    #[serde(borrow, default)]
    on_behalf_of: Option<&'a RawValue>,
    #[serde(borrow, default)]
    key_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    key_owner: Option<&'a RawValue>,
    #[serde(borrow, default)]
    callback_url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    expires_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload_sha256: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rule: Option<&'a RawValue>,
    #[serde(borrow, default)]
    version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    required_approvals: Option<&'a RawValue>,
    #[serde(borrow, default)]
    approvers: Option<&'a RawValue>,
    #[serde(borrow, default)]
    on_expiry: Option<&'a RawValue>,
    #[serde(borrow, default)]
    verdict: Option<&'a RawValue>,
    #[serde(borrow, default)]
    comment: Option<&'a RawValue>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    outcome: Option<&'a RawValue>,
    #[serde(borrow, default)]
    by: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reason: Option<&'a RawValue>,
}

impl<'a> RawData<'a> {
    pub fn parse(data: &'a str) -> serde_json::Result<Self> {
        // A derived struct also reads an array, field by position, where a
        // parsed `Value` has no fields at all: only objects are read here.
        if !data
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return Err(serde::de::Error::custom("event data is not an object"));
        }
        serde_json::from_str(data)
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        match key {
            "action" => self.action,
            "resource" => self.resource,
            "summary" => self.summary,
            "justification" => self.justification,
            "details" => self.details,
            "risk" => self.risk,
            "requester" => self.requester,
            "on_behalf_of" => self.on_behalf_of,
            "key_id" => self.key_id,
            "key_owner" => self.key_owner,
            "callback_url" => self.callback_url,
            "expires_at" => self.expires_at,
            "payload_sha256" => self.payload_sha256,
            "rule" => self.rule,
            "version" => self.version,
            "required_approvals" => self.required_approvals,
            "approvers" => self.approvers,
            "on_expiry" => self.on_expiry,
            "verdict" => self.verdict,
            "comment" => self.comment,
            "channel" => self.channel,
            "outcome" => self.outcome,
            "by" => self.by,
            "reason" => self.reason,
            // A key the fold reads must be a field above; this is caught
            // by the tests, which replay every kind both ways.
            _ => None,
        }
    }
}

/// A replayed field read through [`RawData`].
#[derive(Debug, Clone)]
pub enum Raw<'a> {
    Null,
    /// The field's JSON text, as stored (never `null`).
    Json(&'a RawValue),
    /// A string the fold made, unquoted.
    Text(Cow<'a, str>),
}

impl Raw<'_> {
    /// Whether this is certainly the JSON string `s`; `false` also when it
    /// cannot tell without unescaping (the caller then asks [`Value`]).
    pub fn is_str(&self, s: &str) -> bool {
        match self {
            Raw::Null => false,
            Raw::Text(t) => t == s,
            Raw::Json(r) => r
                .get()
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .is_some_and(|t| !t.contains('\\') && t == s),
        }
    }

    /// Whether this is certainly the JSON text `text` (a number or JSON
    /// stored as text), byte for byte.
    pub fn is_json(&self, text: &str) -> bool {
        matches!(self, Raw::Json(r) if r.get() == text)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Raw::Null)
    }
}

impl<'a> EventData<'a> for RawData<'a> {
    type Field = Raw<'a>;
    fn field(&self, key: &str) -> Raw<'a> {
        self.get(key).map_or(Raw::Null, Raw::Json)
    }
    fn string(&self, key: &str) -> Option<Cow<'a, str>> {
        let raw = self.get(key)?.get();
        if !raw.starts_with('"') {
            return None;
        }
        match serde_json::from_str::<&'a str>(raw) {
            Ok(s) => Some(Cow::Borrowed(s)),
            Err(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
        }
    }
    fn text(s: Cow<'a, str>) -> Raw<'a> {
        Raw::Text(s)
    }
    fn null() -> Raw<'a> {
        Raw::Null
    }
}

/// Field name → value, for every field the trail determines.
pub type State = BTreeMap<&'static str, Value>;

/// Fields `request.created` sets, with the event's key for each.
pub const CREATED: [(&str, &str); 13] = [
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
pub const EVALUATED: [(&str, &str); 5] = [
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

/// Event kinds that change a request's state; the fold skips the others
/// (deliveries, blocked decisions, permits), so a reader need not parse them.
pub fn shapes_request(kind: &str) -> bool {
    matches!(
        kind,
        "request.created"
            | "policy.evaluated"
            | "request.escalated"
            | "decision.approve"
            | "decision.deny"
    ) || final_status(kind).is_some()
}

/// One decision as replayed: who, verdict, comment, channel, when.
#[derive(Debug, Clone)]
pub struct Decided<F> {
    pub principal: F,
    pub verdict: F,
    pub comment: F,
    pub channel: F,
    pub at: F,
}

/// The state a request's events fold into, field by field.
#[derive(Debug, Clone)]
pub struct Replayed<F> {
    /// In [`CREATED`] order.
    pub created: [F; 13],
    pub created_at: F,
    /// In [`EVALUATED`] order.
    pub evaluated: [F; 5],
    pub status: F,
    pub decided_at: F,
    pub decided_by: F,
    pub reason: F,
    pub decisions: Vec<Decided<F>>,
}

/// Folds a request's events, oldest first, into the state its row must
/// hold. Events that do not change the state (`decision.blocked`,
/// deliveries) are skipped. Fails when the events cannot describe a
/// request: none is `request.created`, it is not the first, or a second
/// final event follows the first.
pub fn fold<'a, D: EventData<'a>>(
    events: impl IntoIterator<Item = Event<'a, D>>,
) -> Result<Replayed<D::Field>, String> {
    let mut it = events.into_iter();
    let created = it
        .next()
        .filter(|e| e.kind == "request.created")
        .ok_or("the request has no request.created event first")?;
    let text = |s: &'a str| D::text(Cow::Borrowed(s));
    let mut s = Replayed {
        created: CREATED.map(|(_, key)| created.data.field(key)),
        created_at: text(created.ts),
        evaluated: std::array::from_fn(|_| D::null()),
        status: text("pending"),
        decided_at: D::null(),
        decided_by: D::null(),
        reason: D::null(),
        decisions: Vec::new(),
    };
    let mut final_seen = false;
    for e in it {
        match e.kind {
            "policy.evaluated" => s.evaluated = EVALUATED.map(|(_, key)| e.data.field(key)),
            // Escalation widens who may approve; the event carries the
            // whole set after it, so the row's `approvers` is that set.
            "request.escalated" => s.evaluated[3] = e.data.field("approvers"),
            "decision.approve" | "decision.deny" => s.decisions.push(Decided {
                principal: text(e.actor),
                verdict: e.data.field("verdict"),
                comment: e.data.field("comment"),
                channel: e.data.field("channel"),
                at: text(e.ts),
            }),
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
                let status = match (kind, e.data.string("outcome")) {
                    ("request.expired", Some(outcome)) => outcome,
                    _ => Cow::Borrowed(status),
                };
                // Expiry is decided by the system, which is its actor.
                let by = e.data.string("by").unwrap_or(Cow::Borrowed(e.actor));
                // Cancellation carries no reason; the writer derives it from `by`.
                let reason = match e.data.string("reason") {
                    Some(r) => D::text(r),
                    None if kind == "request.cancelled" => {
                        D::text(Cow::Owned(format!("cancelled by {by}")))
                    }
                    None => D::null(),
                };
                s.status = D::text(status);
                s.decided_at = text(e.ts);
                s.decided_by = D::text(by);
                s.reason = reason;
            }
        }
    }
    Ok(s)
}

/// [`fold`] over parsed events, as a [`State`].
pub fn replay(events: &[EventRef<'_>]) -> Result<State, String> {
    let r = fold(events.iter().copied())?;
    let mut s = State::new();
    for ((field, _), v) in CREATED.iter().zip(r.created) {
        s.insert(field, v);
    }
    s.insert("created_at", r.created_at);
    for ((field, _), v) in EVALUATED.iter().zip(r.evaluated) {
        s.insert(field, v);
    }
    s.insert("status", r.status);
    s.insert("decided_at", r.decided_at);
    s.insert("decided_by", r.decided_by);
    s.insert("reason", r.reason);
    let decisions = r
        .decisions
        .into_iter()
        .map(|d| {
            json!({"principal": d.principal, "verdict": d.verdict, "comment": d.comment,
                   "channel": d.channel, "at": d.at})
        })
        .collect();
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

    /// The raw reading, turned back into JSON, must give the parsed one's state.
    fn replay_raw(evs: &[Ev]) -> Result<State, String> {
        let texts: Vec<String> = evs.iter().map(|e| e.3.to_string()).collect();
        let raws: Vec<RawData<'_>> = texts.iter().map(|t| RawData::parse(t).unwrap()).collect();
        let r = fold(
            evs.iter()
                .zip(raws)
                .map(|(Ev(kind, ts, actor, _), data)| Event {
                    kind,
                    ts,
                    actor,
                    data,
                }),
        )?;
        let value = |f: Raw<'_>| match f {
            Raw::Null => Value::Null,
            Raw::Json(r) => serde_json::from_str(r.get()).unwrap(),
            Raw::Text(t) => json!(t),
        };
        let parsed: Vec<Value> = texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        let as_values: Vec<EventRef<'_>> = evs
            .iter()
            .zip(&parsed)
            .map(|(Ev(kind, ts, actor, _), data)| Event {
                kind,
                ts,
                actor,
                data,
            })
            .collect();
        let expected = replay(&as_values)?;
        let mut s = State::new();
        for ((field, _), v) in CREATED.iter().zip(r.created) {
            s.insert(field, value(v));
        }
        s.insert("created_at", value(r.created_at));
        for ((field, _), v) in EVALUATED.iter().zip(r.evaluated) {
            s.insert(field, value(v));
        }
        s.insert("status", value(r.status));
        s.insert("decided_at", value(r.decided_at));
        s.insert("decided_by", value(r.decided_by));
        s.insert("reason", value(r.reason));
        let decisions = r
            .decisions
            .into_iter()
            .map(|d| {
                json!({"principal": value(d.principal), "verdict": value(d.verdict),
                       "comment": value(d.comment), "channel": value(d.channel), "at": value(d.at)})
            })
            .collect();
        s.insert("decisions", Value::Array(decisions));
        assert_eq!(s, expected);
        Ok(s)
    }

    #[test]
    fn the_raw_reading_replays_every_kind_as_the_parsed_one_does() {
        let approve = Ev(
            "decision.approve",
            "2026-01-01T00:02:00.000Z",
            "user:bob@example.com",
            json!({"verdict": "approve", "comment": "fine \"quoted\"", "channel": "slack"}),
        );
        let approved = Ev(
            "request.approved",
            "2026-01-01T00:02:00.000Z",
            "user:bob@example.com",
            json!({"by": "user:bob@example.com", "reason": "approved by 1 of 1 required"}),
        );
        replay_raw(&[created(), evaluated(), approve, approved]).unwrap();
        let expired = Ev(
            "request.expired",
            "t",
            "system:countersign",
            json!({"outcome": "approved", "reason": "expired; rule 'r' approves on expiry"}),
        );
        replay_raw(&[created(), evaluated(), expired]).unwrap();
        let cancelled = Ev(
            "request.cancelled",
            "t",
            "agent:bot",
            json!({"by": "agent:bot"}),
        );
        replay_raw(&[created(), cancelled]).unwrap();
        let deny = Ev(
            "decision.deny",
            "t",
            "user:bob@example.com",
            json!({"verdict": "deny", "comment": null, "channel": "api"}),
        );
        let denied = Ev(
            "request.denied",
            "t",
            "user:bob@example.com",
            json!({"reason": 3}),
        );
        replay_raw(&[created(), evaluated(), deny, denied]).unwrap();
    }

    #[test]
    fn an_escalation_widens_the_approvers_and_keeps_the_required_count() {
        let escalated = Ev(
            "request.escalated",
            "2026-01-01T00:30:00.000Z",
            "system:countersign",
            json!({"approvers": ["user:bob@example.com", "user:carol@example.com"],
                   "added": ["user:carol@example.com"], "to": ["group:oncall"]}),
        );
        let s = replay_raw(&[created(), evaluated(), escalated]).unwrap();
        assert_eq!(
            s["approvers"],
            json!(["user:bob@example.com", "user:carol@example.com"])
        );
        assert_eq!(s["required_approvals"], 1);
        assert_eq!(s["status"], "pending");
    }

    #[test]
    fn data_naming_a_field_twice_is_left_to_the_parsed_reading() {
        assert!(RawData::parse(r#"{"by": "a", "by": "b"}"#).is_err());
        assert!(RawData::parse("[]").is_err());
        assert!(RawData::parse(r#" ["db.export", "prod/x"]"#).is_err());
        assert!(RawData::parse(" {\"by\": \"a\"}").is_ok());
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
