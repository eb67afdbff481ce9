//! SQLite storage: one writer, many readers.
//!
//! Every write goes through a single writer task that owns one connection.
//! It takes jobs from a queue and runs as many as are waiting in one
//! `BEGIN IMMEDIATE … COMMIT` (group commit: one fsync for many requests),
//! each job inside its own savepoint so a failing job rolls back alone. The
//! audit chain is sequential anyway; with one writer its head is read once
//! per batch inside the transaction, which also keeps the chain whole when
//! another process (the CLI) appends to the same file. A job's caller hears
//! back only after the commit: a 201 or 2xx always means durable.
//!
//! Reads use a separate pool; WAL mode lets them run beside the writer.
//!
//! # The boundary
//!
//! Every SQL statement of the service lives under `src/store`, and only
//! here are the pool (`Store.pool`) and the writer's connection
//! (`WriteCtx.conn`) visible: both fields are private to this module and
//! its children. The rest of the crate calls typed operations, grouped by
//! what they are about (`requests`, `keys`, `identities`, `teams`,
//! `chat_messages`, `outbox`, `permits`, `trail`, `stats`):
//! - reads are functions taking `&Store`, run on the read pool;
//! - writes are functions taking `&mut WriteCtx`, called inside a
//!   [`Store::write`] job, so they commit with the job's audit events and
//!   outbox rows or not at all.
//!
//! Their signatures carry domain and row types (`Approval`, `Principal`,
//! `OutboxItem`, `Conversation`, ...) and [`AppResult`], never a sqlx
//! type, and each operation's SQL is written once, in its function.
//!
//! # Another backend
//!
//! A second database (PostgreSQL is next) is one more implementation of
//! these same operations: `Store` and `WriteCtx` would hold the backend's
//! pool and transaction instead of SQLite's, and each operation would pick
//! its statement for the backend at hand, so no caller changes. The writer's
//! batch (`Writer::run_batch`: begin, read the chain head, savepoint per job,
//! flush events, sign, commit) is the one piece that is per backend by
//! nature. Two readers stay SQLite-only on purpose: `trail::export` and
//! `trail::verify` read the file through rusqlite on a blocking thread for
//! speed; a backend brings its own streaming read for those.

pub mod audit;
pub mod chat_messages;
pub mod checkpoint_sinks;
pub mod checkpoints;
pub mod identities;
pub mod import;
pub mod keys;
pub mod outbox;
pub mod permits;
pub mod postgres;
pub mod requests;
pub mod stats;
pub mod teams;
pub mod trail;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Executor, SqliteConnection, SqlitePool};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::clock;
use crate::error::{AppError, AppResult};
use crate::waiters::Waiters;
use audit::Signer;

/// Things that may only happen once the batch has committed.
#[derive(Debug, Clone)]
pub enum AfterCommit {
    Wake(Uuid),
    OutboxQueued,
    NewDeadline,
    Final {
        status: &'static str,
        created_at: DateTime<Utc>,
    },
}

/// What a job sees: the writer's connection inside the open transaction,
/// the batch's clock and the chain head.
pub struct WriteCtx {
    conn: SqliteConnection,
    pub now: DateTime<Utc>,
    head_seq: i64,
    head_hash: String,
    effects: Vec<AfterCommit>,
    /// Events appended in this batch, written just before the commit.
    pending_events: Vec<audit::StoredEvent>,
    /// Signs permits for requests that become approved; set once by the
    /// service at start (`crate::permits::install`), empty in the CLI.
    pub permits: PermitSlot,
}

/// Where the service installs its permit issuer, shared by the store and
/// its writer so jobs can reach it without a parameter on every call.
pub type PermitSlot = Arc<std::sync::OnceLock<Arc<crate::permits::Issuer>>>;

impl WriteCtx {
    pub fn now_str(&self) -> String {
        clock::fmt(self.now)
    }

    /// Appends one event to the chain and returns its seq.
    ///
    /// The row is written at the end of the batch, with the others, in a
    /// few multi-row INSERTs (one round trip to SQLite's thread instead of
    /// one per event), still inside the batch's transaction. So a job must
    /// not read `audit_events` back; none does: the chain head is kept here.
    pub async fn audit(
        &mut self,
        actor: &str,
        request: Option<(Uuid, &str)>,
        kind: &str,
        data: &Value,
    ) -> AppResult<i64> {
        let seq = self.head_seq + 1;
        let ts = clock::fmt(self.now);
        let (request_id, action) = match request {
            Some((id, action)) => (id.to_string(), action),
            None => (String::new(), ""),
        };
        let data = data.to_string();
        let hash = audit::event_hash(
            &self.head_hash,
            seq,
            &ts,
            actor,
            &request_id,
            action,
            kind,
            &data,
        );
        let prev_hash = std::mem::replace(&mut self.head_hash, hash.clone());
        self.head_seq = seq;
        self.pending_events.push(audit::StoredEvent {
            seq,
            ts,
            actor: actor.to_string(),
            request_id,
            action: action.to_string(),
            kind: kind.to_string(),
            data,
            prev_hash,
            hash,
        });
        Ok(seq)
    }

    /// Writes the events appended since the last flush, in multi-row
    /// INSERTs of 32, 16, 8, 4, 2 or 1 rows: few round trips, and only six
    /// statement shapes for the connection's prepared-statement cache.
    async fn flush_events(&mut self) -> Result<(), sqlx::Error> {
        let mut rest = &self.pending_events[..];
        while !rest.is_empty() {
            let n = 1usize << rest.len().min(32).ilog2();
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_events_sql(n)));
            for e in chunk {
                q = q
                    .bind(e.seq)
                    .bind(&e.ts)
                    .bind(&e.actor)
                    .bind(&e.request_id)
                    .bind(&e.action)
                    .bind(&e.kind)
                    .bind(&e.data)
                    .bind(&e.prev_hash)
                    .bind(&e.hash);
            }
            q.execute(&mut self.conn).await?;
        }
        self.pending_events.clear();
        Ok(())
    }

    /// Queues work for the outbox worker in this same transaction. Rows in
    /// one `lane` are delivered in order.
    pub async fn enqueue(
        &mut self,
        kind: &str,
        lane: &str,
        request_id: Option<Uuid>,
        payload: &Value,
    ) -> AppResult<i64> {
        let now = self.now_str();
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO outbox (kind, lane, request_id, payload, next_attempt_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(kind)
        .bind(lane)
        .bind(request_id.map(|u| u.to_string()))
        .bind(payload.to_string())
        .bind(&now)
        .bind(&now)
        .fetch_one(&mut self.conn)
        .await?;
        self.effects.push(AfterCommit::OutboxQueued);
        Ok(id)
    }

    /// Events this batch appended for `request_id` and has not written yet,
    /// so a check inside the batch sees the whole trail of the request.
    pub fn pending_for<'a>(
        &'a self,
        request_id: &'a str,
    ) -> impl Iterator<Item = &'a audit::StoredEvent> + 'a {
        self.pending_events
            .iter()
            .filter(move |e| e.request_id == request_id)
    }

    pub fn after_commit(&mut self, effect: AfterCommit) {
        self.effects.push(effect);
    }
}

fn insert_events_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO audit_events (seq, ts, actor, request_id, action, kind, data, prev_hash, hash) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql
}

type Finisher = Box<dyn FnOnce(Option<String>) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, (bool, Finisher)> + Send>;

/// Signals raised after commits, for the background workers.
#[derive(Clone, Default)]
pub struct Signals {
    pub outbox: Arc<Notify>,
    pub deadlines: Arc<Notify>,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    jobs: mpsc::Sender<Job>,
    pub signer: Arc<Signer>,
    pub waiters: Waiters,
    pub signals: Signals,
    /// WAL frames not yet copied back into the database at the last checkpoint.
    pub wal_backlog: Arc<AtomicI64>,
    pub permits: PermitSlot,
    /// Where signed heads go after each commit, once started.
    pub checkpoints: Arc<OnceLock<checkpoints::Checkpoints>>,
}

/// Connection options shared by the writer, the readers and the CLI.
/// `synchronous=FULL` in WAL mode makes every acknowledged commit survive a
/// power loss, not only a process kill.
fn connect_options(db: &str) -> AppResult<SqliteConnectOptions> {
    // Never taken for a file name: `postgres://…` must not quietly become a
    // SQLite file called `postgres:`.
    match postgres::backend_of(db).map_err(AppError::BadRequest)? {
        postgres::Backend::Sqlite => {}
        postgres::Backend::Postgres => {
            return Err(AppError::BadRequest(format!(
                "{} is a PostgreSQL URL, and this part of the service runs on SQLite only for now",
                postgres::redacted(db)
            )));
        }
    }
    let opts = if db.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(db)
            .map_err(|e| AppError::BadRequest(format!("bad database URL '{db}': {e}")))?
    } else {
        SqliteConnectOptions::new().filename(db)
    };
    Ok(opts
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("temp_store", "memory")
        // Rows SQLite's thread may run ahead of the reader: with sqlx's
        // default of 50 a full-trail export or verify hands over every
        // few rows between two threads; 1024 lets it stream.
        .row_buffer_size(1024))
}

pub async fn migrate(db: &str) -> anyhow::Result<()> {
    let mut conn = SqliteConnection::connect_with(&connect_options(db)?).await?;
    sqlx::migrate!("./migrations").run(&mut conn).await?;
    // Closed before returning, not dropped: a dropped connection closes
    // later on SQLite's thread, and a caller that reopens the file at once
    // (the trail import switches the journal mode) would find it locked.
    conn.close().await?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database, applies migrations, loads
    /// or creates the signing key and starts the writer task.
    pub async fn open(db: &str, key_path: &Path, read_connections: u32) -> anyhow::Result<Self> {
        Self::open_with_signer(db, Signer::load_or_create(key_path)?, read_connections).await
    }

    /// [`open`](Self::open) with a signing key already loaded (e.g. from
    /// `COUNTERSIGN_SIGNING_KEY_PEM`).
    pub async fn open_with_signer(
        db: &str,
        signer: Signer,
        read_connections: u32,
    ) -> anyhow::Result<Self> {
        let opts = connect_options(db)?;
        let mut conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {db}: {e}"))?;
        sqlx::migrate!("./migrations")
            .run(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate database {db}: {e}"))?;
        // The writer never checkpoints inside its own commits (SQLite would
        // copy the WAL into the database, with an fsync, while every request
        // in the batch waits); `checkpoint` does it beside the writer.
        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(read_connections.max(1))
            .min_connections(1)
            .connect_with(opts.read_only(false))
            .await?;
        let signer = Arc::new(signer);
        let waiters = Waiters::default();
        let signals = Signals::default();
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let permits = PermitSlot::default();
        let sinks: Arc<OnceLock<checkpoints::Checkpoints>> = Arc::default();
        let writer = Writer {
            checkpoints: sinks.clone(),
            ctx: WriteCtx {
                conn,
                now: clock::now(),
                head_seq: 0,
                head_hash: String::new(),

                effects: vec![],
                pending_events: vec![],
                permits: permits.clone(),
            },
            signer: signer.clone(),
            waiters: waiters.clone(),
            signals: signals.clone(),
        };
        tokio::spawn(writer.run(rx));
        let wal_backlog = Arc::new(AtomicI64::new(0));
        tokio::spawn(checkpoint(pool.clone(), wal_backlog.clone()));
        Ok(Self {
            pool,
            jobs: tx,
            signer,
            waiters,
            signals,
            wal_backlog,
            permits,
            checkpoints: sinks,
        })
    }

    /// Starts writing each signed head to the checkpoint file at `path`
    /// (`COUNTERSIGN_AUDIT_CHECKPOINTS`). Only the service calls this; the
    /// CLI's short-lived writes are covered by the next head it signs.
    pub fn start_checkpoints(&self, path: &Path) -> anyhow::Result<()> {
        let sink = checkpoints::Checkpoints::start(path)?;
        let _ = self.checkpoints.set(sink);
        Ok(())
    }

    /// Whether the database answers a read (`/readyz`).
    pub async fn ping(&self) -> AppResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Runs `f` inside the writer's transaction and returns its result once
    /// committed. If `f` fails, everything it wrote is rolled back.
    pub async fn write<T, F>(&self, f: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, AppResult<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<AppResult<T>>();
        let job: Job = Box::new(move |ctx: &mut WriteCtx| {
            Box::pin(async move {
                let result = match AssertUnwindSafe(f(ctx)).catch_unwind().await {
                    Ok(r) => r,
                    Err(_) => Err(AppError::Internal(anyhow::anyhow!("a write job panicked"))),
                };
                let ok = result.is_ok();
                let finish: Finisher = Box::new(move |commit_error: Option<String>| {
                    let _ = tx.send(match commit_error {
                        None => result,
                        Some(e) => Err(AppError::Internal(anyhow::anyhow!("commit failed: {e}"))),
                    });
                });
                (ok, finish)
            })
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| AppError::Unavailable("the service is shutting down".into()))?;
        rx.await
            .map_err(|_| AppError::Unavailable("the writer stopped before answering".into()))?
    }
}

/// Copies the WAL back into the database once a second, on a reader
/// connection. PASSIVE never blocks the writer or readers; what it cannot
/// copy now (pages a reader still sees) it copies next time. SQLite resets
/// the WAL to its start once everything in it has been copied.
async fn checkpoint(pool: SqlitePool, backlog: Arc<AtomicI64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            break;
        }
        // (busy, frames in the WAL, frames copied to the database)
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
        {
            Ok((_, log, copied)) => backlog.store((log - copied).max(0), Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
}

struct Writer {
    checkpoints: Arc<OnceLock<checkpoints::Checkpoints>>,
    ctx: WriteCtx,
    signer: Arc<Signer>,
    waiters: Waiters,
    signals: Signals,
}

/// Jobs in one transaction at most; bounds the latency a batch adds.
const MAX_BATCH: usize = 256;

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            metrics::histogram!("countersign_write_batch_size").record(batch.len() as f64);
            self.run_batch(&mut batch).await;
        }
        tracing::debug!("writer stopped");
    }

    async fn run_batch(&mut self, batch: &mut Vec<Job>) {
        let signer = &self.signer;
        let ctx = &mut self.ctx;
        ctx.now = clock::now();
        ctx.effects.clear();
        let mut finishers: Vec<Finisher> = Vec::with_capacity(batch.len());
        let mut signed: Option<checkpoints::Checkpoint> = None;
        let result: Result<(), sqlx::Error> = async {
            ctx.conn.execute("BEGIN IMMEDIATE").await?;
            let head: Option<(i64, String, String)> =
                sqlx::query_as("SELECT seq, hash, ts FROM audit_events ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut ctx.conn)
                    .await?;
            let (seq, hash, ts) = head.unwrap_or((0, audit::GENESIS.to_string(), String::new()));
            (ctx.head_seq, ctx.head_hash) = (seq, hash);
            // Event times never go backwards, even if the clock does, so
            // time filters can be turned into seq bounds.
            if let Some(last) = clock::parse(&ts)
                && last > ctx.now
            {
                ctx.now = last;
            }
            let start_seq = ctx.head_seq;
            ctx.pending_events.clear();
            // Each job runs inside its own savepoint, so a failing job rolls
            // back alone. Releasing one and opening the next is one round
            // trip to SQLite's thread.
            ctx.conn.execute("SAVEPOINT job").await?;
            let jobs = batch.len();
            for (i, job) in batch.drain(..).enumerate() {
                let (seq, hash, effects, events) = (
                    ctx.head_seq,
                    ctx.head_hash.clone(),
                    ctx.effects.len(),
                    ctx.pending_events.len(),
                );
                let (ok, finish) = job(ctx).await;
                finishers.push(finish);
                if !ok {
                    ctx.conn.execute("ROLLBACK TO job").await?;
                    (ctx.head_seq, ctx.head_hash) = (seq, hash);
                    ctx.effects.truncate(effects);
                    ctx.pending_events.truncate(events);
                }
                if i + 1 < jobs {
                    ctx.conn.execute("RELEASE job; SAVEPOINT job").await?;
                } else {
                    ctx.conn.execute("RELEASE job").await?;
                }
            }
            ctx.flush_events().await?;
            if ctx.head_seq != start_seq {
                let signature = signer.sign(&ctx.head_hash);
                sqlx::query("INSERT INTO audit_signatures (seq, hash, signature, public_key) VALUES (?, ?, ?, ?)")
                    .bind(ctx.head_seq)
                    .bind(&ctx.head_hash)
                    .bind(&signature)
                    .bind(signer.public_hex())
                    .execute(&mut ctx.conn)
                    .await?;
                signed = Some(checkpoints::Checkpoint {
                    seq: ctx.head_seq,
                    hash: ctx.head_hash.clone(),
                    ts: clock::fmt(ctx.now),
                    signature,
                    key_id: signer.public_hex().to_string(),
                });
            }
            ctx.conn.execute("COMMIT").await?;
            Ok(())
        }
        .await;

        match result {
            Ok(()) => {
                for f in finishers {
                    f(None);
                }
                // Handed off, never written here: the sink's fsync must not
                // hold up the next batch.
                if let (Some(head), Some(sink)) = (signed, self.checkpoints.get()) {
                    sink.send(head);
                }
                self.apply_effects();
            }
            Err(e) => {
                tracing::error!(error = %e, "write batch failed; rolled back");
                let _ = ctx.conn.execute("ROLLBACK").await;
                // Jobs never reached (drained but unfinished) drop their
                // senders, which their callers see as an error.
                batch.clear();
                for f in finishers {
                    f(Some(e.to_string()));
                }
            }
        }
    }

    fn apply_effects(&mut self) {
        let mut outbox = false;
        let mut deadlines = false;
        for effect in self.ctx.effects.drain(..) {
            match effect {
                AfterCommit::Wake(id) => self.waiters.wake(&id),
                AfterCommit::OutboxQueued => outbox = true,
                AfterCommit::NewDeadline => deadlines = true,
                AfterCommit::Final { status, created_at } => {
                    metrics::counter!("countersign_requests_final_total", "status" => status)
                        .increment(1);
                    let secs =
                        (self.ctx.now - created_at).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::histogram!("countersign_time_to_decision_seconds", "status" => status)
                        .record(secs);
                }
            }
        }
        if outbox {
            self.signals.outbox.notify_one();
        }
        if deadlines {
            self.signals.deadlines.notify_one();
        }
    }
}
