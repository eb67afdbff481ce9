//! Seeds the audit trail with a realistic history written into the SQLite
//! file before the service starts (through the store's bulk import,
//! `store::import`, not the service): a correct hash chain (the library's
//! `event_hash`) ending in a head signature (the library's `Signer`), so
//! `audit verify` accepts it and the service appends to it.
//!
//! The history is a stream of request stories over the last 90 days: an
//! agent asks (`request.created`), the policy answers (`policy.evaluated`),
//! then a person approves or denies, the policy allows at once, or the
//! request expires; a few blocked decisions and webhook deliveries, and now
//! and then an operator event. Actors, actions and payload sizes vary as
//! they would in use. The generator is seeded, so every run writes the same
//! trail (up to the timestamps, which end at the moment of seeding).
//! How it is written fast is the import's business (see its module doc).

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

use countersign::clock;
use countersign::store::audit::{GENESIS, Signer, StoredEvent, event_hash};
use countersign::store::import::TrailImport;

/// What the scenarios need to know about the seeded trail.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub events: u64,
    /// A sample of request ids that have events (for `?request=`).
    pub request_ids: Vec<Uuid>,
    /// People who decided (for `?actor=`).
    pub people: Vec<String>,
    pub seconds: f64,
    pub bytes: u64,
}

pub const ACTIONS: &[&str] = &[
    "db.export",
    "db.read.rows",
    "db.read.schema",
    "db.migrate",
    "db.drop",
    "iam.role.grant",
    "iam.role.revoke",
    "iam.user.create",
    "deploy.production",
    "deploy.staging",
    "infra.terraform.apply",
    "infra.k8s.scale",
    "secrets.read",
    "secrets.rotate",
    "payments.refund",
    "email.bulk_send",
];

const AGENTS: usize = 200;
const PEOPLE: usize = 500;
const ROWS_PER_TRANSACTION: usize = 50_000;
const HISTORY: Duration = Duration::from_secs(90 * 24 * 3600);

/// The chain as it is being written.
struct Chain {
    seq: i64,
    head: String,
    rows: Vec<StoredEvent>,
}

impl Chain {
    fn push(
        &mut self,
        ts: &str,
        actor: &str,
        request: Option<(&str, &str)>,
        kind: &str,
        data: &serde_json::Value,
    ) {
        let seq = self.seq + 1;
        let (request_id, action) = request.unwrap_or(("", ""));
        // serde_json's map is ordered by key and `to_string` adds no
        // spaces: the canonical form the service stores.
        let data = data.to_string();
        let hash = event_hash(&self.head, seq, ts, actor, request_id, action, kind, &data);
        let prev_hash = std::mem::replace(&mut self.head, hash.clone());
        self.seq = seq;
        self.rows.push(StoredEvent {
            seq,
            ts: ts.to_string(),
            actor: actor.to_string(),
            request_id: request_id.to_string(),
            action: action.to_string(),
            kind: kind.to_string(),
            data,
            prev_hash,
            hash,
        });
    }
}

fn person(i: usize) -> String {
    format!("user:person{i:03}@example.com")
}

/// Appends one request's story to the chain; `t` advances with each event.
fn story(chain: &mut Chain, rng: &mut StdRng, t: DateTime<Utc>, step: i64, out: &mut Seeded) {
    // Request ids are UUID v7 of the moment the request was made.
    let id = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        t.timestamp() as u64,
        t.timestamp_subsec_nanos(),
    ));
    let ids = id.to_string();
    let action = ACTIONS[rng.gen_range(0..ACTIONS.len())];
    let agent = format!("agent:bot-{:03}", rng.gen_range(0..AGENTS));
    let owner = person(rng.gen_range(0..PEOPLE));
    let env = ["prod", "staging", "dev"][rng.gen_range(0..3)];
    let resource = format!(
        "{env}/{}-{}",
        action.split('.').next().unwrap_or("x"),
        rng.gen_range(0..5000)
    );
    let risk = ["low", "medium", "high", "critical"][rng.gen_range(0..4)];
    let mut details = serde_json::Map::new();
    for k in 0..rng.gen_range(1..8) {
        details.insert(
            format!("field_{k}"),
            json!(format!("value {} for {resource}", rng.r#gen::<u32>())),
        );
    }
    let payload = format!("{:064x}", rng.r#gen::<u128>());
    let req = Some((ids.as_str(), action));
    let ts = clock::fmt(t);
    chain.push(&ts, &agent, req, "request.created", &json!({
        "action": action, "resource": resource,
        "summary": format!("{action} on {resource} for ticket OPS-{}", rng.gen_range(1000..99999)),
        "justification": "Requested by the on-call engineer during the incident review",
        "details": details, "risk": risk, "requester": agent, "on_behalf_of": owner,
        "key_id": Uuid::now_v7(), "key_owner": owner, "callback_url": null,
        "expires_at": clock::fmt(t + chrono::Duration::minutes(15)),
        "payload_sha256": payload, "idempotency_key": null,
    }));
    let roll = rng.gen_range(0..100);
    let allowed = action.starts_with("db.read") || roll < 20;
    let rule = if allowed { "reads" } else { "default" };
    chain.push(&ts, "system", req, "policy.evaluated", &json!({
        "rule": rule, "version": "9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a",
        "effect": if allowed { "allow" } else { "require_approval" },
        "required_approvals": if allowed { 0 } else { 1 }, "approvers": [], "on_expiry": "deny",
    }));
    if allowed {
        chain.push(
            &ts,
            "system",
            req,
            "request.approved",
            &json!({
                "by": "policy:reads", "reason": "allowed by policy rule 'reads'",
            }),
        );
    } else {
        // Decided a little later, before the next request comes in.
        let ts = clock::fmt(t + chrono::Duration::milliseconds(rng.gen_range(1..step.max(2))));
        let who = person(rng.gen_range(0..PEOPLE));
        let channel = ["slack", "teams", "api"][rng.gen_range(0..3)];
        if roll < 28 {
            // Someone tried to approve their own agent's request first.
            chain.push(&ts, &owner, req, "decision.blocked", &json!({
                "reason": "self_approval", "message": "you cannot approve a request made on your behalf",
                "verdict": "approve", "channel": channel, "status": "pending",
            }));
        }
        if roll < 85 {
            chain.push(&ts, &who, req, "decision.approve", &json!({
                "verdict": "approve", "comment": null, "channel": channel, "payload_sha256": payload,
            }));
            chain.push(
                &ts,
                &who,
                req,
                "request.approved",
                &json!({
                    "by": who, "reason": "approved by 1 of 1 required", "channel": channel,
                }),
            );
        } else if roll < 95 {
            chain.push(&ts, &who, req, "decision.deny", &json!({
                "verdict": "deny", "comment": "not during the freeze", "channel": channel, "payload_sha256": payload,
            }));
            chain.push(
                &ts,
                &who,
                req,
                "request.denied",
                &json!({
                    "by": who, "reason": format!("denied by {who}"), "channel": channel,
                }),
            );
        } else {
            chain.push(
                &ts,
                "system",
                req,
                "request.expired",
                &json!({
                    "by": "system", "reason": "expired without a decision; on_expiry is deny",
                }),
            );
        }
        if roll % 7 == 0 {
            chain.push(
                &ts,
                "system",
                req,
                "webhook.delivered",
                &json!({
                    "outbox_id": chain.seq, "status": 200, "attempt": 1,
                }),
            );
        }
        if out.people.len() < 64 && !out.people.contains(&who) {
            out.people.push(who);
        }
    }
    if rng.gen_range(0..2000) == 0 {
        chain.push(&ts, "operator:root", None, "key.created", &json!({
            "key_id": Uuid::now_v7(), "principal": agent, "owner": owner, "scopes": ["read", "request"],
        }));
    }
    if out.request_ids.len() < 4096 && rng.gen_range(0..32) == 0 {
        out.request_ids.push(id);
    }
}

/// Writes `events` events into a fresh database at `db`, signed with the
/// key at `key_path` (created if missing, where the service will look).
pub async fn seed(db: &Path, key_path: &Path, events: u64) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let mut import = TrailImport::open(db).await?;
    let signer = Signer::load_or_create(key_path)?;
    let mut out = Seeded {
        events: 0,
        request_ids: vec![],
        people: vec![],
        seconds: 0.0,
        bytes: 0,
    };
    let mut rng = StdRng::seed_from_u64(20_260_101);
    let mut chain = Chain {
        seq: 0,
        head: GENESIS.to_string(),
        rows: Vec::with_capacity(ROWS_PER_TRANSACTION + 16),
    };
    // Events are spread evenly over the history, ending a minute ago.
    let now = clock::now();
    let t0 = now - chrono::Duration::from_std(HISTORY)? - chrono::Duration::minutes(1);
    let step = (HISTORY.as_millis() as i64 / events.max(1) as i64).max(2);
    while (chain.seq as u64) < events {
        let t = t0 + chrono::Duration::milliseconds(chain.seq * step);
        story(&mut chain, &mut rng, t, step, &mut out);
        if chain.rows.len() >= ROWS_PER_TRANSACTION {
            import.append(&chain.rows).await?;
            chain.rows.clear();
        }
    }
    import.append(&chain.rows).await?;
    import.finish(&signer, chain.seq, &chain.head).await?;
    out.events = chain.seq as u64;
    out.seconds = started.elapsed().as_secs_f64();
    out.bytes = std::fs::metadata(db)?.len();
    Ok(out)
}
