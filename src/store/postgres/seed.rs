//! Fills a database with a valid, signed audit chain, fast: for tests that
//! compare the backends and for the benchmark's PostgreSQL rows.
//!
//! [`SeedChain`] generates the events deterministically (same options and
//! key, same events, byte for byte), so a PostgreSQL and a SQLite database
//! seeded alike must export identically. The events are request stories
//! (created, evaluated, decided, final) and now and then an operator event,
//! with text that exercises every escape the exports have: quotes, commas,
//! backslashes, escaped newlines, non-ASCII. Each run of `per_signature`
//! events ends in a head signature, as a committed write batch does.
//!
//! PostgreSQL is filled with binary `COPY … FROM STDIN`, one statement for
//! the events and one for the signatures, in one transaction: the schema's
//! triggers (chain continuity, facets) run as for any writer, nothing is
//! switched off. The generator (hashing) runs on a blocking thread beside
//! the server's inserts.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::{Executor, PgPool};
use tokio::sync::mpsc;

use super::copy::BinaryWriter;
use crate::clock;
use crate::store::audit::{GENESIS, Signer, StoredEvent, event_hash};

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub events: u64,
    /// A head signature after every this many events (and after the last).
    pub per_signature: u64,
    /// The first event's time; each next one is 7 ms later.
    pub start: DateTime<Utc>,
    /// Seeds the generator: same seed, same events.
    pub seed: u64,
}

impl SeedOptions {
    pub fn new(events: u64) -> Self {
        Self {
            events,
            per_signature: 64,
            start: DateTime::from_timestamp_millis(1_767_225_600_000).expect("2026-01-01"),
            seed: 10,
        }
    }
}

/// A head signature row, as the writer stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSignature {
    pub seq: i64,
    pub hash: String,
    pub signature: String,
    pub public_key: String,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub events: u64,
    pub signatures: u64,
    pub head_hash: String,
    pub seconds: f64,
}

const ACTIONS: &[&str] = &[
    "db.export",
    "db.read.rows",
    "db.migrate",
    "iam.role.grant",
    "deploy.production",
    "infra.terraform.apply",
    "secrets.rotate",
    "payments.refund",
];

/// Summaries that exercise the exports' escaping.
const SUMMARIES: &[&str] = &[
    "Export the customers table",
    "Grant \"admin\" to a contractor, for 2 days",
    "Run C:\\tools\\migrate.exe --all",
    "Line one\nline two\ttabbed",
    "Rückerstattung für Bestellung 1042 – 30 €",
    "扩容生产集群 🚀",
    "<!channel> *bold* `code` ~strike~",
];

/// The events of a seeded trail, in seq order, each with the head
/// signature that follows it, if any.
pub struct SeedChain<'s> {
    opts: SeedOptions,
    signer: &'s Signer,
    rng: StdRng,
    seq: i64,
    head: String,
    /// The request whose story is being told, and the step it is at.
    story: Option<(String, &'static str, u8)>,
}

impl<'s> SeedChain<'s> {
    pub fn new(opts: SeedOptions, signer: &'s Signer) -> Self {
        let rng = StdRng::seed_from_u64(opts.seed);
        Self {
            opts,
            signer,
            rng,
            seq: 0,
            head: GENESIS.into(),
            story: None,
        }
    }

    fn uuid(&mut self, ts_ms: i64) -> String {
        // UUID v7 layout from the event time and the seeded generator.
        let mut b: [u8; 16] = self.rng.r#gen();
        b[..6].copy_from_slice(&ts_ms.to_be_bytes()[2..]);
        b[6] = 0x70 | (b[6] & 0x0f);
        b[8] = 0x80 | (b[8] & 0x3f);
        uuid::Uuid::from_bytes(b).to_string()
    }

    /// The next event's fields: actor, request (id, action), kind, data.
    fn next_fields(
        &mut self,
        ts_ms: i64,
    ) -> (String, Option<(String, &'static str)>, &'static str, String) {
        let agent = format!("agent:bot-{}", self.rng.gen_range(0..50));
        let person = format!("user:p{}@example.com", self.rng.gen_range(0..200));
        if self.story.is_none() {
            if self.rng.gen_ratio(1, 20) {
                let key = self.uuid(ts_ms);
                let data = json!({"key_id": key, "name": "ci, nightly", "owner": person,
                    "principal": agent, "scopes": ["request", "read"]});
                return ("service:cli".into(), None, "key.created", data.to_string());
            }
            let id = self.uuid(ts_ms);
            let action = ACTIONS[self.rng.gen_range(0..ACTIONS.len())];
            self.story = Some((id, action, 0));
        }
        let (id, action, step) = self.story.clone().expect("a story is open");
        let request = Some((id.clone(), action));
        let approve = self.rng.gen_ratio(3, 4);
        let (actor, kind, data, next) = match step {
            0 => {
                let summary = SUMMARIES[self.rng.gen_range(0..SUMMARIES.len())];
                let rows: u64 = self.rng.gen_range(1..1_000_000);
                let data = json!({"action": action, "details": {"reason": "ticket OPS-1042", "rows": rows,
                    "tables": ["customers", "orders"]}, "requester": agent,
                    "resource": format!("prod/db-{}", rows % 7), "risk": "high", "summary": summary});
                (agent, "request.created", data, Some(1))
            }
            1 => {
                let data = json!({"approvers": ["group:dba"], "effect": "require_approval",
                    "required_approvals": 1, "rule": "prod-data"});
                (
                    "service:policy".to_string(),
                    "policy.evaluated",
                    data,
                    Some(2),
                )
            }
            2 if approve => {
                let data = json!({"channel": "slack", "comment": null, "verdict": "approve"});
                (person, "decision.approve", data, Some(3))
            }
            2 => {
                let data = json!({"channel": "teams", "comment": "not during the freeze, \"please\"",
                    "verdict": "deny"});
                (person, "decision.deny", data, Some(4))
            }
            3 => {
                let data = json!({"reason": "approved by 1 of 1 required"});
                (person, "request.approved", data, None)
            }
            _ => {
                let data = json!({"reason": "denied"});
                (person, "request.denied", data, None)
            }
        };
        self.story = next.map(|n| (id, action, n));
        (actor, request, kind, data.to_string())
    }
}

impl Iterator for SeedChain<'_> {
    type Item = (StoredEvent, Option<SeedSignature>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.seq as u64 >= self.opts.events {
            return None;
        }
        let seq = self.seq + 1;
        let ts_ms = self.opts.start.timestamp_millis() + 7 * seq;
        let ts = clock::fmt(DateTime::from_timestamp_millis(ts_ms).expect("a valid time"));
        let (actor, request, kind, data) = self.next_fields(ts_ms);
        let (request_id, action) = request.unwrap_or_default();
        let hash = event_hash(
            &self.head,
            seq,
            &ts,
            &actor,
            &request_id,
            action,
            kind,
            &data,
        );
        let prev_hash = std::mem::replace(&mut self.head, hash.clone());
        self.seq = seq;
        let signed = (seq as u64).is_multiple_of(self.opts.per_signature.max(1))
            || seq as u64 == self.opts.events;
        let signature = signed.then(|| SeedSignature {
            seq,
            hash: hash.clone(),
            signature: self.signer.sign(&hash),
            public_key: self.signer.public_hex().to_string(),
        });
        Some((
            StoredEvent {
                seq,
                ts,
                actor,
                request_id,
                action: action.to_string(),
                kind: kind.to_string(),
                data,
                prev_hash,
                hash,
            },
            signature,
        ))
    }
}

const EVENTS_COPY: &str = "COPY audit_events (seq, ts, actor, request_id, action, kind, data, prev_hash, hash) \
     FROM STDIN (FORMAT binary)";
const SIGNATURES_COPY: &str =
    "COPY audit_signatures (seq, hash, signature, public_key) FROM STDIN (FORMAT binary)";

/// Writes a seeded chain into an empty PostgreSQL trail (migrated first).
pub async fn seed_postgres(
    pool: &PgPool,
    opts: &SeedOptions,
    signer: Arc<Signer>,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let opts_for_thread = opts.clone();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
    let generator = tokio::task::spawn_blocking(move || {
        let mut events = BinaryWriter::default();
        let mut signatures = BinaryWriter::default();
        let (mut n, mut s, mut head) = (0u64, 0u64, GENESIS.to_string());
        for (e, sig) in SeedChain::new(opts_for_thread, &signer) {
            events
                .tuple(9)
                .int8(e.seq)
                .text(&e.ts)
                .text(&e.actor)
                .text(&e.request_id)
                .text(&e.action)
                .text(&e.kind)
                .text(&e.data)
                .text(&e.prev_hash)
                .text(&e.hash);
            if let Some(sig) = sig {
                signatures
                    .tuple(4)
                    .int8(sig.seq)
                    .text(&sig.hash)
                    .text(&sig.signature)
                    .text(&sig.public_key);
                s += 1;
            }
            n += 1;
            head = e.hash;
            if events.len() >= 1 << 20 && tx.blocking_send(events.take()).is_err() {
                break;
            }
        }
        events.trailer();
        let _ = tx.blocking_send(events.take());
        signatures.trailer();
        (signatures.take(), n, s, head)
    });
    let mut conn = pool.acquire().await?;
    conn.execute("BEGIN").await?;
    conn.execute("SET LOCAL statement_timeout = 0").await?;
    let mut copy = conn.copy_in_raw(EVENTS_COPY).await?;
    while let Some(chunk) = rx.recv().await {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    let (signatures, events, signed, head_hash) = generator.await?;
    let mut copy = conn.copy_in_raw(SIGNATURES_COPY).await?;
    copy.send(signatures).await?;
    copy.finish().await?;
    conn.execute("COMMIT").await?;
    Ok(Seeded {
        events,
        signatures: signed,
        head_hash,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes the same chain into a SQLite database (migrated first), so a
/// test or the benchmark can put the two backends side by side.
pub async fn seed_sqlite(
    db: &str,
    opts: &SeedOptions,
    signer: Arc<Signer>,
) -> anyhow::Result<Seeded> {
    crate::store::migrate(db).await?;
    let (path, opts) = (crate::store::trail::db_file(db), opts.clone());
    tokio::task::spawn_blocking(move || sqlite_blocking(&path, opts, &signer)).await?
}

fn sqlite_blocking(
    path: &std::path::Path,
    opts: SeedOptions,
    signer: &Signer,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let mut conn = rusqlite::Connection::open(path)?;
    let tx = conn.transaction()?;
    let (mut events, mut signed, mut head_hash) = (0u64, 0u64, GENESIS.to_string());
    {
        let mut insert = tx.prepare(
            "INSERT INTO audit_events (seq, ts, actor, request_id, action, kind, data, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        let mut sign = tx.prepare(
            "INSERT INTO audit_signatures (seq, hash, signature, public_key) VALUES (?, ?, ?, ?)",
        )?;
        for (e, sig) in SeedChain::new(opts, signer) {
            insert.execute(rusqlite::params![
                e.seq,
                e.ts,
                e.actor,
                e.request_id,
                e.action,
                e.kind,
                e.data,
                e.prev_hash,
                e.hash
            ])?;
            if let Some(s) = sig {
                sign.execute(rusqlite::params![s.seq, s.hash, s.signature, s.public_key])?;
                signed += 1;
            }
            events += 1;
            head_hash = e.hash;
        }
    }
    tx.commit()?;
    Ok(Seeded {
        events,
        signatures: signed,
        head_hash,
        seconds: started.elapsed().as_secs_f64(),
    })
}
