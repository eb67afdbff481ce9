//! The small tables derived from the trail (API keys, identity links, the
//! audit facets), checked against the events that made them: pure
//! comparisons, so `audit verify` reaches the same verdict on SQLite and
//! on PostgreSQL whatever each reads its rows with.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::trail::Mismatch;

/// The events an API key's row follows from.
pub const KEY_KINDS: [&str; 2] = ["key.created", "key.revoked"];
/// The events an identity link follows from.
pub const IDENTITY_KINDS: [&str; 2] = ["identity.linked", "identity.unlinked"];

/// An `api_keys` row as stored (`scopes` comma-separated).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    pub id: String,
    pub principal: String,
    pub owner: Option<String>,
    pub scopes: String,
    pub name: Option<String>,
    pub revoked: bool,
}

/// Each key row against its `key.created` / `key.revoked` events
/// (`(kind, data)`, oldest first): principal, owner, scopes, name, and
/// whether it is revoked; `extra` for a row no event made, `missing` for a
/// created key with no row.
pub fn key_mismatches(events: &[(String, Value)], rows: Vec<StoredKey>) -> Vec<Mismatch> {
    let mut expected: BTreeMap<String, BTreeMap<&str, Value>> = BTreeMap::new();
    for (kind, data) in events {
        let id = data["key_id"].as_str().unwrap_or_default().to_string();
        if kind == "key.created" {
            let mut scopes: Vec<String> = data["scopes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            scopes.sort();
            expected.insert(
                id,
                BTreeMap::from([
                    ("principal", data["principal"].clone()),
                    ("owner", data["owner"].clone()),
                    ("scopes", json!(scopes)),
                    ("name", data["name"].clone()),
                    ("revoked", json!(false)),
                ]),
            );
        } else if let Some(k) = expected.get_mut(&id) {
            k.insert("revoked", json!(true));
        }
    }
    let mut out = Vec::new();
    for r in rows {
        let mut scopes: Vec<&str> = r.scopes.split(',').filter(|s| !s.is_empty()).collect();
        scopes.sort();
        let stored = BTreeMap::from([
            ("principal", json!(r.principal)),
            ("owner", json!(r.owner)),
            ("scopes", json!(scopes)),
            ("name", json!(r.name)),
            ("revoked", json!(r.revoked)),
        ]);
        let fields: Vec<String> = match expected.remove(&r.id) {
            None => vec!["extra".to_string()],
            Some(exp) => stored
                .iter()
                .filter(|(f, v)| exp.get(*f) != Some(*v))
                .map(|(f, _)| f.to_string())
                .collect(),
        };
        if !fields.is_empty() {
            out.push(Mismatch {
                subject: "key",
                id: r.id,
                fields,
            });
        }
    }
    out.extend(expected.into_keys().map(|id| Mismatch {
        subject: "key",
        id,
        fields: vec!["missing".into()],
    }));
    out
}

/// Each `identities` row (`(external, principal)`) against the
/// `identity.linked` / `identity.unlinked` events: the latest link of each
/// chat account, and nothing else.
pub fn identity_mismatches(
    events: &[(String, Value)],
    stored: Vec<(String, String)>,
) -> Vec<Mismatch> {
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for (kind, data) in events {
        let external = data["external"].as_str().unwrap_or_default().to_string();
        if kind == "identity.linked" {
            let p = data["principal"].as_str().unwrap_or_default().to_string();
            expected.insert(external, p);
        } else {
            expected.remove(&external);
        }
    }
    let mut out = Vec::new();
    for (external, principal) in stored {
        let fields = match expected.remove(&external) {
            None => vec!["extra".to_string()],
            Some(p) if p != principal => vec!["principal".to_string()],
            Some(_) => vec![],
        };
        if !fields.is_empty() {
            out.push(Mismatch {
                subject: "identity",
                id: external,
                fields,
            });
        }
    }
    out.extend(expected.into_keys().map(|external| Mismatch {
        subject: "identity",
        id: external,
        fields: vec!["missing".into()],
    }));
    out
}

/// `audit_facets` must hold exactly the distinct `(facet, value)` pairs of
/// the events: a missing row hides events from glob and prefix queries.
pub fn facet_mismatches(
    expected: &BTreeSet<(String, String)>,
    stored: &BTreeSet<(String, String)>,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for (set, other, what) in [(expected, stored, "missing"), (stored, expected, "extra")] {
        for (facet, value) in set.difference(other) {
            out.push(Mismatch {
                subject: "facet",
                id: format!("{facet}:{value}"),
                fields: vec![what.into()],
            });
        }
    }
    out
}

/// The same three checks on PostgreSQL, in one read-only snapshot.
pub async fn check_postgres(pool: &sqlx::PgPool) -> crate::error::AppResult<Vec<Mismatch>> {
    let mut tx = super::postgres::read_snapshot(pool, true).await?;
    let events_of = |kinds: [&'static str; 2]| {
        sqlx::query_as::<_, (String, String)>(
            "SELECT kind, data FROM audit_events WHERE kind = ANY($1) ORDER BY seq",
        )
        .bind(kinds.to_vec())
    };
    let parse = |rows: Vec<(String, String)>| -> Vec<(String, Value)> {
        rows.into_iter()
            .map(|(k, d)| (k, serde_json::from_str(&d).unwrap_or(Value::Null)))
            .collect()
    };
    let key_events = parse(events_of(KEY_KINDS).fetch_all(&mut *tx).await?);
    let keys: Vec<StoredKey> = sqlx::query_as(
        "SELECT id::text AS id, principal, owner, scopes, name, revoked_at IS NOT NULL AS revoked \
         FROM api_keys ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut out = key_mismatches(&key_events, keys);

    let identity_events = parse(events_of(IDENTITY_KINDS).fetch_all(&mut *tx).await?);
    let links: Vec<(String, String)> =
        sqlx::query_as("SELECT external, principal FROM identities ORDER BY external")
            .fetch_all(&mut *tx)
            .await?;
    out.extend(identity_mismatches(&identity_events, links));

    let expected: BTreeSet<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT 'action', action FROM audit_events WHERE action <> '' \
         UNION SELECT DISTINCT 'kind', kind FROM audit_events",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let stored: BTreeSet<(String, String)> =
        sqlx::query_as("SELECT facet, value FROM audit_facets")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    out.extend(facet_mismatches(&expected, &stored));
    tx.commit().await?;
    Ok(out)
}

/// The event that records a permit's redemption.
pub const REDEEMED: &str = "permit.redeemed";

/// A `permit_redemptions` row as stored.
#[derive(Debug, Clone, Copy)]
pub struct RedemptionRow<'a> {
    pub redeemed_by: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub redeemed_at: Option<&'a str>,
}

/// One of a request's events as its cells read (`data` as JSON text).
#[derive(Debug, Clone, Copy)]
pub struct EventCells<'a> {
    pub kind: &'a str,
    pub ts: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub data: Option<&'a str>,
}

/// A permit's `permit_redemptions` rows (at most one: `jti` is its key)
/// against its request's events, oldest first: exactly one
/// `permit.redeemed` event per row and no event without one, redeemer
/// (`redeemed_by`: the event's actor and `by`), key (`key_id`) and time
/// (`redeemed_at`: the event's time and `redeemed_at`) agreeing, the event
/// naming this permit (`jti`), a `permit.issued` event before it
/// (`issued`), and the request approved by its events (`status`).
pub fn redemption_differences(
    id: &str,
    rows: &[RedemptionRow<'_>],
    events: &[EventCells<'_>],
) -> Vec<String> {
    use crate::domain::replay::{self, EventRef};
    let parse = |d: Option<&str>| -> Value {
        d.and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null)
    };
    let mut issued = false;
    let mut shaping: Vec<(&EventCells<'_>, Value)> = Vec::new();
    let mut redeemed: Vec<(&EventCells<'_>, Value, bool)> = Vec::new();
    for e in events {
        match e.kind {
            "permit.issued" => issued = true,
            REDEEMED => redeemed.push((e, parse(e.data), issued)),
            k if replay::shapes_request(k) => shaping.push((e, parse(e.data))),
            _ => {}
        }
    }
    let refs: Vec<EventRef<'_>> = shaping
        .iter()
        .map(|(e, data)| EventRef {
            kind: e.kind,
            ts: e.ts.unwrap_or_default(),
            actor: e.actor.unwrap_or_default(),
            data,
        })
        .collect();
    let approved =
        replay::replay(&refs).is_ok_and(|s| s.get("status") == Some(&Value::from("approved")));
    let mut fields: Vec<String> = Vec::new();
    match (rows, redeemed.as_slice()) {
        ([], _) => fields.push("missing".into()),
        (_, []) => fields.push("extra".into()),
        ([row, ..], [(event, data, _)]) => {
            let by = row.redeemed_by;
            if by.is_none() || by != event.actor || by != data["by"].as_str() {
                fields.push("redeemed_by".into());
            }
            if row.key_id.is_none() || row.key_id != data["key_id"].as_str() {
                fields.push("key_id".into());
            }
            let at = row.redeemed_at;
            if at.is_none() || at != event.ts || at != data["redeemed_at"].as_str() {
                fields.push("redeemed_at".into());
            }
        }
        _ => fields.push("redeemed twice".into()),
    }
    if redeemed
        .iter()
        .any(|(_, data, _)| data["jti"].as_str() != Some(id))
    {
        fields.push("jti".into());
    }
    if !issued || redeemed.iter().any(|(_, _, before)| !before) {
        fields.push("issued".into());
    }
    if !approved {
        fields.push("status".into());
    }
    fields
}
