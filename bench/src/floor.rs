//! w. The writer floor: what SQLite on this machine can commit of the rows
//! a create writes, with nothing of the service around it.
//!
//! One thread, one rusqlite connection, prepared statements, batches of 64
//! creates in one `BEGIN IMMEDIATE … COMMIT`, WAL and `synchronous=FULL`
//! (the service's durability), on a copy of the seeded database made by
//! this repository's migrations (`countersign::store::migrate`, through the
//! seed), so every index and trigger of the real schema is there and as
//! deep as the service's. No HTTP, no async, no hand-off between threads.
//!
//! Per create it writes what the service's `App::create_request` writes
//! (src/service/approvals.rs) for the benchmark's two rules:
//! - `b` (`require_approval`): the request row (pending), `request.created`
//!   and `policy.evaluated`, and with Slack configured one `slack.post`
//!   outbox row;
//! - `c` (`allow`): the request row (approved), `request.created`,
//!   `policy.evaluated`, `request.approved` and `permit.issued`, no outbox
//!   row.
//!
//! Each event is chained with the library's own `event_hash`; the facets
//! are kept by the schema's trigger; each batch reads the chain head first
//! and ends with a signature row signed by the library's `Signer`, as the
//! service's writer does. It leaves out what is not the schema's cost: the
//! per-job savepoints and the checkpoints (the service checkpoints beside
//! its writer, not in it).
//!
//! This is the one place outside `src/store` with SQL of the service's
//! tables, on purpose: it measures the schema itself, not the store.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use countersign::clock;
use countersign::store::audit::{Signer, event_hash};

/// Creates in one transaction.
pub const BATCH: usize = 64;

/// Which create is measured.
#[derive(Debug, Clone, Copy)]
pub enum Mix {
    /// `b`: approval required; `chat` adds the chat post's outbox row.
    Approval { chat: bool },
    /// `c`: allowed by policy at once.
    Allowed,
}

impl Mix {
    pub fn events(self) -> usize {
        match self {
            Mix::Approval { .. } => 2,
            Mix::Allowed => 4,
        }
    }

    pub fn outbox_rows(self) -> usize {
        match self {
            Mix::Approval { chat: true } => 1,
            _ => 0,
        }
    }
}

pub struct Floor {
    pub creates: u64,
    pub elapsed: Duration,
    /// BEGIN to the end of COMMIT, per batch, in microseconds, sorted.
    pub batch_micros: Vec<u64>,
}

impl Floor {
    pub fn per_second(&self) -> f64 {
        self.creates as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of the batch times, in ms.
    pub fn batch_ms(&self, q: f64) -> Option<f64> {
        let n = self.batch_micros.len();
        (n > 0).then(|| self.batch_micros[((n as f64 * q) as usize).min(n - 1)] as f64 / 1000.0)
    }
}

const HEAD: &str = "SELECT seq, hash, ts FROM audit_events ORDER BY seq DESC LIMIT 1";
// The service's statements (src/store/requests.rs, src/store/mod.rs), one
// row each: with a prepared statement on the same thread there is no
// round trip to save by batching rows.
const INSERT_REQUEST: &str = "INSERT INTO approval_requests (id, action, resource, summary, justification, details, risk, requester, \
     key_id, key_owner, on_behalf_of, status, policy_rule, policy_version, required_approvals, approvers, \
     on_expiry, slack_channel, teams_conversation, callback_url, payload_sha256, created_at, expires_at, \
     decided_at, decided_by, final_reason, idempotency_key, idempotency_hash) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_EVENT: &str = "INSERT INTO audit_events (seq, ts, actor, request_id, action, kind, data, prev_hash, hash) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_OUTBOX: &str = "INSERT INTO outbox (kind, lane, request_id, payload, next_attempt_at, created_at) \
     VALUES (?, ?, ?, ?, ?, ?)";
const INSERT_SIGNATURE: &str =
    "INSERT INTO audit_signatures (seq, hash, signature, public_key) VALUES (?, ?, ?, ?)";

/// A policy version as the service stamps it (a SHA-256 in hex).
const VERSION: &str = "9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a";
const AGENT: &str = "agent:bench";
const OWNER: &str = "user:owner@example.com";

/// The chain as this thread appends to it.
struct Chain {
    seq: i64,
    head: String,
    ts: String,
}

/// Runs `mix` for `warmup` then `duration` on the database at `db`, signing
/// with `signer`. Blocking: call it from a thread of its own.
pub fn run(
    db: &Path,
    signer: &Signer,
    mix: Mix,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Floor> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // The service's connection options (src/store/mod.rs: connect_options)
    // and its writer's: no checkpoint inside a commit.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "memory")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let mut n = 0u64;
    let warm_until = Instant::now() + warmup;
    while Instant::now() < warm_until {
        batch(&conn, signer, mix, &mut n)?;
    }
    let started = Instant::now();
    let (mut creates, mut batch_micros) = (0u64, vec![]);
    while started.elapsed() < duration {
        let t = Instant::now();
        batch(&conn, signer, mix, &mut n)?;
        batch_micros.push(t.elapsed().as_micros() as u64);
        creates += BATCH as u64;
    }
    let elapsed = started.elapsed();
    // Not timed: leave a small file behind for the next mix.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    batch_micros.sort_unstable();
    Ok(Floor {
        creates,
        elapsed,
        batch_micros,
    })
}

/// One transaction of [`BATCH`] creates, as the service's writer commits a
/// batch: head, rows, signature, commit.
fn batch(conn: &Connection, signer: &Signer, mix: Mix, n: &mut u64) -> anyhow::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut chain = conn.prepare_cached(HEAD)?.query_row([], |r| {
        Ok(Chain {
            seq: r.get(0)?,
            head: r.get(1)?,
            ts: r.get(2)?,
        })
    })?;
    // Event times never go backwards (the writer's rule).
    let now = clock::now();
    let ts = clock::fmt(now);
    if ts > chain.ts {
        chain.ts = ts;
    }
    let now = clock::parse(&chain.ts).unwrap_or(now);
    let start = chain.seq;
    for _ in 0..BATCH {
        create(conn, &mut chain, mix, now, *n)?;
        *n += 1;
    }
    if chain.seq != start {
        let signature = signer.sign(&chain.head);
        conn.prepare_cached(INSERT_SIGNATURE)?.execute(params![
            chain.seq,
            chain.head,
            signature,
            signer.public_hex()
        ])?;
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// The rows of one create, with the content the benchmark's `b` and `c`
/// send (scenarios.rs: `create_body`).
fn create(
    conn: &Connection,
    chain: &mut Chain,
    mix: Mix,
    now: chrono::DateTime<chrono::Utc>,
    n: u64,
) -> anyhow::Result<()> {
    let id = Uuid::now_v7();
    let ids = id.to_string();
    let allowed = matches!(mix, Mix::Allowed);
    let (action, rule) = if allowed {
        ("bench.read", "bench-allow")
    } else {
        ("bench.approve", "bench-approve")
    };
    let resource = format!("bench/resource-{}", n % 1000);
    let summary = format!("Benchmark request {n}");
    let details = json!({ "n": n, "table": "customers", "rows": 1200 });
    let now_s = clock::fmt(now);
    let expires_at = if allowed {
        now_s.clone()
    } else {
        clock::fmt(now + chrono::Duration::hours(2))
    };
    // The payload hash over the canonical content, as
    // `RequestContent::payload_hash` takes it.
    let canonical = json!({
        "action": action, "resource": resource, "summary": summary,
        "justification": "load test", "details": details, "risk": "medium",
        "requester": AGENT, "on_behalf_of": OWNER,
    })
    .to_string();
    let payload = hex::encode(Sha256::digest(canonical.as_bytes()));
    let key_id = Uuid::nil().to_string();
    let (status, decided_by, reason) = if allowed {
        (
            "approved",
            Some(format!("policy:{rule}")),
            Some(format!("allowed by policy rule '{rule}'")),
        )
    } else {
        ("pending", None, None)
    };
    let required = if allowed { 0 } else { 1 };
    conn.prepare_cached(INSERT_REQUEST)?.execute(params![
        ids,
        action,
        resource,
        summary,
        "load test",
        details.to_string(),
        "medium",
        AGENT,
        key_id,
        OWNER,
        OWNER,
        status,
        rule,
        VERSION,
        required,
        "[]",
        "deny",
        None::<String>,
        None::<String>,
        None::<String>,
        payload,
        now_s,
        expires_at,
        allowed.then_some(now_s.as_str()),
        decided_by,
        reason,
        None::<String>,
        None::<String>,
    ])?;
    let mut audit = |actor: &str, kind: &str, data: serde_json::Value| -> anyhow::Result<()> {
        let seq = chain.seq + 1;
        let data = data.to_string();
        let hash = event_hash(
            &chain.head,
            seq,
            &chain.ts,
            actor,
            &ids,
            action,
            kind,
            &data,
        );
        conn.prepare_cached(INSERT_EVENT)?.execute(params![
            seq, chain.ts, actor, ids, action, kind, data, chain.head, hash
        ])?;
        chain.seq = seq;
        chain.head = hash;
        Ok(())
    };
    audit(
        AGENT,
        "request.created",
        json!({
            "action": action, "resource": resource, "summary": summary,
            "justification": "load test", "details": details, "risk": "medium",
            "requester": AGENT, "on_behalf_of": OWNER, "key_id": key_id,
            "key_owner": OWNER, "callback_url": null, "expires_at": expires_at,
            "payload_sha256": payload, "idempotency_key": null,
        }),
    )?;
    audit(
        "system",
        "policy.evaluated",
        json!({
            "rule": rule, "version": VERSION,
            "effect": if allowed { "allow" } else { "require_approval" },
            "required_approvals": required, "approvers": [], "on_expiry": "deny",
        }),
    )?;
    if allowed {
        audit(
            "system",
            "request.approved",
            json!({ "by": decided_by, "reason": reason }),
        )?;
        let iat = now.timestamp();
        audit(
            "system",
            "permit.issued",
            json!({
                "jti": ids, "iss": "http://127.0.0.1:40000", "sub": AGENT, "action": action,
                "resource": resource, "payload_sha256": payload, "approvers": [],
                "policy": { "rule": rule, "version": VERSION }, "iat": iat, "exp": iat + 300,
                "kid": "0123456789abcdef",
            }),
        )?;
    }
    if mix.outbox_rows() > 0 {
        conn.prepare_cached(INSERT_OUTBOX)?.execute(params![
            "slack.post",
            format!("slack:{id}"),
            ids,
            json!({ "request_id": id }).to_string(),
            now_s,
            now_s,
        ])?;
    }
    Ok(())
}
