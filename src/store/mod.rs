//! SQLite storage: one writer, many readers.
//!
//! Every write goes through a single writer that owns one connection: on
//! SQLite a thread of its own running rusqlite's prepared statements
//! synchronously (no hand-off to another thread per statement; see
//! [`stmt`]), on PostgreSQL a task on sqlx's connection.
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
//! `chat_messages`, `outbox`, `permits`, `trail`, `stats`, `socket_envelopes`):
//! - reads are functions taking `&Store`, run on the read pool;
//! - writes are functions taking `&mut WriteCtx`, called inside a
//!   [`Store::write`] job, so they commit with the job's audit events and
//!   outbox rows or not at all.
//!
//! Their signatures carry domain and row types (`Approval`, `Principal`,
//! `OutboxItem`, `Conversation`, ...) and [`AppResult`], never a sqlx
//! type, and each operation's SQL is written once, in its function.
//!
//! # Two backends
//!
//! `Store` and `WriteCtx` hold SQLite's pool and connection or
//! PostgreSQL's ([`backend::Db`]), and each operation runs the statement
//! it wrote for the backend at hand (the `on!` macro), so no caller
//! knows which one it talks to. The writer's batch is the same on both;
//! what differs is said where it differs: on PostgreSQL the batch first
//! takes the chain lock (several replicas append to one chain), and its
//! wake-ups also go to the other replicas as notifications
//! ([`postgres::listen`]). Full-trail export and verify bring their own
//! streaming reads per backend (rusqlite on SQLite's file, `COPY` on
//! PostgreSQL).

#[macro_use]
pub mod backend;
#[macro_use]
pub mod stmt;
pub mod audit;
pub mod chat_messages;
pub mod checkpoint_sinks;
pub mod checkpoints;
pub mod console;
pub mod derived;
pub mod identities;
pub mod import;
pub mod keys;
pub mod outbox;
pub mod permits;
#[cfg(test)]
mod plans;
pub mod postgres;
pub mod requests;
pub mod socket_envelopes;
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
use rusqlite::OptionalExtension;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection, SqlitePool};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::clock;
use crate::error::{AppError, AppResult};
use crate::waiters::Waiters;
use audit::Signer;
use backend::{Conn, Db, Pool};
use stmt::{Row, Scalar, Stmt};

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
    conn: Conn,
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

    /// Runs a statement that returns no rows; the number of rows it changed.
    pub(super) async fn exec(&mut self, s: Stmt<'_>) -> AppResult<u64> {
        Ok(match &mut self.conn {
            Db::Sqlite(c) => c
                .prepare_cached(&s.sqlite)?
                .execute(rusqlite::params_from_iter(&s.args))? as u64,
            Db::Postgres(c) => sqlx::query_with(sqlx::AssertSqlSafe(&*s.postgres), s.pg_args()?)
                .execute(&mut *c)
                .await?
                .rows_affected(),
        })
    }

    /// Every row a statement returns.
    pub(super) async fn rows<T: Row>(&mut self, s: Stmt<'_>) -> AppResult<Vec<T>> {
        self.fetch(s, usize::MAX).await
    }

    /// The first row a statement returns, if any.
    pub(super) async fn row<T: Row>(&mut self, s: Stmt<'_>) -> AppResult<Option<T>> {
        Ok(self.fetch(s, 1).await?.pop())
    }

    /// The one row a statement must return (`INSERT … RETURNING`, a row
    /// the same job just made sure of).
    pub(super) async fn one<T: Row>(&mut self, s: Stmt<'_>) -> AppResult<T> {
        self.row(s).await?.ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!(
                "a statement that returns a row returned none"
            ))
        })
    }

    /// The first column of every row.
    pub(super) async fn scalars<T: Scalar>(&mut self, s: Stmt<'_>) -> AppResult<Vec<T>> {
        let rows: Vec<(T,)> = self.fetch(s, usize::MAX).await?;
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }

    /// The first column of the first row, if there is a row.
    pub(super) async fn scalar<T: Scalar>(&mut self, s: Stmt<'_>) -> AppResult<Option<T>> {
        Ok(self.fetch::<(T,)>(s, 1).await?.pop().map(|(v,)| v))
    }

    async fn fetch<T: Row>(&mut self, s: Stmt<'_>, limit: usize) -> AppResult<Vec<T>> {
        match &mut self.conn {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(&s.sqlite)?;
                let mut rows = st.query(rusqlite::params_from_iter(&s.args))?;
                let mut out = Vec::new();
                while out.len() < limit
                    && let Some(r) = rows.next()?
                {
                    out.push(T::from_sqlite(r)?);
                }
                Ok(out)
            }
            Db::Postgres(c) => {
                let q =
                    sqlx::query_as_with::<_, T, _>(sqlx::AssertSqlSafe(&*s.postgres), s.pg_args()?);
                Ok(if limit == 1 {
                    q.fetch_optional(&mut *c).await?.into_iter().collect()
                } else {
                    q.fetch_all(&mut *c).await?
                })
            }
        }
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

    /// Writes the events appended since the last flush. On SQLite each is
    /// one run of a prepared statement on the writer's own connection; on
    /// PostgreSQL they go in multi-row INSERTs of 32, 16, 8, 4, 2 or 1
    /// rows: few round trips, and only six statement shapes for the
    /// connection's prepared-statement cache.
    async fn flush_events(&mut self) -> AppResult<()> {
        let events = std::mem::take(&mut self.pending_events);
        match &mut self.conn {
            Db::Sqlite(c) => {
                let mut insert =
                    c.prepare_cached(&insert_events_sql(1, postgres::Backend::Sqlite))?;
                for ev in &events {
                    insert.execute(rusqlite::params![
                        ev.seq,
                        ev.ts,
                        ev.actor,
                        ev.request_id,
                        ev.action,
                        ev.kind,
                        ev.data,
                        ev.prev_hash,
                        ev.hash
                    ])?;
                }
            }
            Db::Postgres(c) => {
                let mut rest = &events[..];
                while !rest.is_empty() {
                    let n = 1usize << rest.len().min(32).ilog2();
                    let (chunk, tail) = rest.split_at(n);
                    rest = tail;
                    let sql = insert_events_sql(n, postgres::Backend::Postgres);
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for ev in chunk {
                        q = q
                            .bind(ev.seq)
                            .bind(&ev.ts)
                            .bind(&ev.actor)
                            .bind(&ev.request_id)
                            .bind(&ev.action)
                            .bind(&ev.kind)
                            .bind(&ev.data)
                            .bind(&ev.prev_hash)
                            .bind(&ev.hash);
                    }
                    q.execute(&mut *c).await?;
                }
            }
        }
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
        let (id,): (i64,) = self
            .one(stmt!(
                sqlite: "INSERT INTO outbox (kind, lane, request_id, payload, next_attempt_at, created_at) \
                    VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                postgres: "INSERT INTO outbox (kind, lane, request_id, payload, next_attempt_at, created_at) \
                    VALUES ($1, $2, $3::uuid, $4::json, $5::timestamptz, $6::timestamptz) RETURNING id",
                [kind, lane, request_id.map(|u| u.to_string()), payload.to_string(), &now, &now],
            ))
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

    /// A statement without values that reads the same on both backends
    /// (`SAVEPOINT`, `COMMIT`, …).
    async fn execute(&mut self, sql: &'static str) -> AppResult<()> {
        match &mut self.conn {
            Db::Sqlite(c) => c.execute_batch(sql)?,
            Db::Postgres(c) => {
                c.execute(sql).await?;
            }
        }
        Ok(())
    }
}

/// What other replicas must hear of a batch's effects, as notification
/// payloads (`postgres::listen` reads them): `wake:<id>` for a request a
/// long-poll may wait on, `outbox` and `deadline` for the workers.
fn notifications(effects: &[AfterCommit]) -> Vec<String> {
    let mut notes = Vec::new();
    let (mut outbox, mut deadline) = (false, false);
    for effect in effects {
        match effect {
            AfterCommit::Wake(id) => notes.push(format!("wake:{id}")),
            AfterCommit::OutboxQueued => outbox = true,
            AfterCommit::NewDeadline => deadline = true,
            AfterCommit::Final { .. } => {}
        }
    }
    if outbox {
        notes.push("outbox".into());
    }
    if deadline {
        notes.push("deadline".into());
    }
    notes
}

fn insert_events_sql(rows: usize, backend: postgres::Backend) -> String {
    let mut sql = String::from(
        "INSERT INTO audit_events (seq, ts, actor, request_id, action, kind, data, prev_hash, hash) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        match backend {
            postgres::Backend::Sqlite => sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            postgres::Backend::Postgres => {
                let b = i * 9;
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9
                ));
            }
        }
    }
    sql
}

/// Why a batch did not commit: the database could not be reached (the
/// caller hears 503 and may retry) or something else went wrong.
#[derive(Debug, Clone)]
struct CommitFailure {
    unavailable: bool,
    message: String,
}

impl CommitFailure {
    fn of(e: &AppError) -> Self {
        Self {
            unavailable: matches!(e, AppError::Unavailable(_)),
            message: e.to_string(),
        }
    }

    fn into_error(self) -> AppError {
        if self.unavailable {
            AppError::Unavailable(crate::error::DB_UNAVAILABLE.into())
        } else {
            AppError::Internal(anyhow::anyhow!("commit failed: {}", self.message))
        }
    }
}

type Finisher = Box<dyn FnOnce(Option<CommitFailure>) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, (bool, Finisher)> + Send>;

/// Signals raised after commits, for the background workers.
#[derive(Clone, Default)]
pub struct Signals {
    pub outbox: Arc<Notify>,
    pub deadlines: Arc<Notify>,
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    jobs: mpsc::Sender<Job>,
    pub signer: Arc<Signer>,
    pub waiters: Waiters,
    pub signals: Signals,
    /// WAL frames not yet copied back into the database at the last checkpoint.
    pub wal_backlog: Arc<AtomicI64>,
    pub permits: PermitSlot,
    /// Where signed heads go after each commit, once started.
    pub checkpoints: Arc<OnceLock<checkpoints::Checkpoints>>,
    /// This process among the replicas on one database: who holds an
    /// outbox lease.
    pub replica: Arc<str>,
    /// The `db` setting, for the full-trail reads (export, verify).
    db_url: Arc<str>,
}

/// The settings of every SQLite connection: sqlx's (the readers, the CLI)
/// and the writer's own (rusqlite). `synchronous=FULL` in WAL mode makes
/// every acknowledged commit survive a power loss, not only a process kill.
const PRAGMAS: [(&str, &str); 4] = [
    ("journal_mode", "WAL"),
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    ("temp_store", "memory"),
];
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection options shared by the readers and the CLI.
fn connect_options(db: &str) -> AppResult<SqliteConnectOptions> {
    let opts = if db.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(db)
            .map_err(|e| AppError::BadRequest(format!("bad database URL '{db}': {e}")))?
    } else {
        SqliteConnectOptions::new().filename(db)
    };
    let opts = PRAGMAS
        .iter()
        .fold(opts, |o, &(key, value)| o.pragma(key, value));
    Ok(opts
        .create_if_missing(true)
        .busy_timeout(BUSY_TIMEOUT)
        // Rows SQLite's thread may run ahead of the reader: with sqlx's
        // default of 50 a full-trail export or verify hands over every
        // few rows between two threads; 1024 lets it stream.
        .row_buffer_size(1024))
}

/// The writer's own SQLite connection, with the settings of every other
/// ([`PRAGMAS`]). It never checkpoints inside its own commits
/// (SQLite would copy the WAL into the database, with an fsync, while every
/// request in the batch waits); [`checkpoint`] does it beside the writer.
fn open_writer(db: &str) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(trail::db_file(db))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    for (key, value) in PRAGMAS {
        conn.pragma_update(None, key, value)?;
    }
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Every statement the store writes stays prepared.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// Which backend `db` names; anything but a path, `sqlite:` or a
/// PostgreSQL URL is refused (never taken for a file name: `mysql://…`
/// must not quietly become a SQLite file called `mysql:`).
fn backend_of(db: &str) -> AppResult<postgres::Backend> {
    postgres::backend_of(db).map_err(AppError::BadRequest)
}

/// Applies the backend's migrations (`countersign migrate`; the service
/// also does it at start).
pub async fn migrate(db: &str) -> anyhow::Result<()> {
    if backend_of(db)? == postgres::Backend::Postgres {
        return postgres::migrate(db).await;
    }
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
        let (conn, pool, reconnect) = match backend_of(db)? {
            postgres::Backend::Sqlite => {
                let opts = connect_options(db)?;
                let mut conn = SqliteConnection::connect_with(&opts)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot open database {db}: {e}"))?;
                sqlx::migrate!("./migrations")
                    .run(&mut conn)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot migrate database {db}: {e}"))?;
                conn.close().await?;
                let conn = open_writer(db)
                    .map_err(|e| anyhow::anyhow!("cannot open database {db}: {e}"))?;
                let pool = SqlitePoolOptions::new()
                    .max_connections(read_connections.max(1))
                    .min_connections(1)
                    .connect_with(opts.read_only(false))
                    .await?;
                (Db::Sqlite(conn), Db::Sqlite(pool), None)
            }
            postgres::Backend::Postgres => {
                postgres::migrate(db).await?;
                let opts = postgres::connect_options(db)?;
                let conn = PgConnection::connect_with(&opts).await.map_err(|e| {
                    anyhow::anyhow!("cannot connect to {}: {e}", postgres::redacted(db))
                })?;
                let pool = postgres::connect_with(db, read_connections.max(2)).await?;
                (Db::Postgres(conn), Db::Postgres(pool), Some(opts))
            }
        };
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
            reconnect,
            broken: false,
        };
        match writer.ctx.conn {
            // The writer's statements run synchronously on its own thread,
            // which owns the connection: no hand-off to another thread per
            // statement, and a commit's fsync never holds a runtime worker.
            // The thread drives its batches as futures (jobs are async for
            // PostgreSQL's sake) inside the runtime's context, so what a job
            // awaits besides the store still works.
            Db::Sqlite(_) => {
                let runtime = tokio::runtime::Handle::current();
                std::thread::Builder::new()
                    .name("countersign-writer".into())
                    .spawn(move || {
                        let _entered = runtime.enter();
                        futures::executor::block_on(writer.run(rx));
                    })?;
            }
            Db::Postgres(_) => {
                tokio::spawn(writer.run(rx));
            }
        }
        let wal_backlog = Arc::new(AtomicI64::new(0));
        match &pool {
            Db::Sqlite(p) => {
                tokio::spawn(checkpoint(p.clone(), wal_backlog.clone()));
            }
            Db::Postgres(p) => {
                tokio::spawn(postgres::listen::run(
                    p.clone(),
                    waiters.clone(),
                    signals.clone(),
                ));
            }
        }
        Ok(Self {
            pool,
            jobs: tx,
            signer,
            waiters,
            signals,
            wal_backlog,
            permits,
            checkpoints: sinks,
            replica: Uuid::now_v7().to_string().into(),
            db_url: db.into(),
        })
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> postgres::Backend {
        self.pool.backend()
    }

    /// The `db` setting this store was opened with.
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// The read pool, for the operations in this module's children.
    fn db(&self) -> Db<&SqlitePool, &sqlx::PgPool> {
        self.pool.as_ref()
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
        on!(self.db(), sqlite: "SELECT 1", postgres: "SELECT 1", |sql, e| sqlx::query(sql).execute(e).await?.rows_affected());
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
                let finish: Finisher = Box::new(move |failure: Option<CommitFailure>| {
                    let _ = tx.send(match failure {
                        None => result,
                        Some(f) => Err(f.into_error()),
                    });
                });
                (ok, finish)
            })
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| AppError::Unavailable("the service is shutting down".into()))?;
        // A dropped job was never run: the writer could not reach the
        // database for its batch, or it is stopping.
        rx.await
            .map_err(|_| AppError::Unavailable(crate::error::DB_UNAVAILABLE.into()))?
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
    /// PostgreSQL: how to open a new connection when the writer's breaks
    /// (the server restarted, the network dropped).
    reconnect: Option<sqlx::postgres::PgConnectOptions>,
    /// Whether the connection failed in the last batch and must be renewed
    /// before the next.
    broken: bool,
}

/// Jobs in one transaction at most; bounds the latency a batch adds.
const MAX_BATCH: usize = 256;

/// The notification channel replicas on one PostgreSQL database share
/// (see `postgres::listen`).
pub const NOTIFY_CHANNEL: &str = "countersign";

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
            if self.connected().await {
                self.run_batch(&mut batch).await;
            } else {
                // Never run, so their callers hear 503 (see `Store::write`).
                batch.clear();
            }
        }
        tracing::debug!("writer stopped");
    }

    /// Renews a broken PostgreSQL connection; false if the server still
    /// cannot be reached. SQLite's connection never breaks this way.
    async fn connected(&mut self) -> bool {
        if !self.broken {
            return true;
        }
        let Some(opts) = &self.reconnect else {
            return true;
        };
        match PgConnection::connect_with(opts).await {
            Ok(conn) => {
                tracing::info!("the writer reconnected to PostgreSQL");
                self.ctx.conn = Db::Postgres(conn);
                self.broken = false;
                // Replicas that wrote meanwhile woke nobody here while the
                // listener was down; it wakes every waiter when it is back.
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the writer cannot reach PostgreSQL; refusing writes");
                false
            }
        }
    }

    async fn run_batch(&mut self, batch: &mut Vec<Job>) {
        let signer = &self.signer;
        let ctx = &mut self.ctx;
        ctx.now = clock::now();
        ctx.effects.clear();
        let mut finishers: Vec<Finisher> = Vec::with_capacity(batch.len());
        let mut signed: Option<checkpoints::Checkpoint> = None;
        let result: AppResult<()> = async {
            let head = match &mut ctx.conn {
                Db::Sqlite(conn) => {
                    conn.execute_batch("BEGIN IMMEDIATE")?;
                    let head: Option<(i64, String, String)> = conn
                        .prepare_cached(
                            "SELECT seq, hash, ts FROM audit_events ORDER BY seq DESC LIMIT 1",
                        )?
                        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()?;
                    let (seq, hash, ts) =
                        head.unwrap_or((0, audit::GENESIS.to_string(), String::new()));
                    postgres::ChainHead {
                        seq,
                        hash,
                        ts: Some(ts),
                    }
                }
                // Other replicas append to the same chain: the lock makes
                // this batch's head the one nobody else builds on.
                Db::Postgres(conn) => {
                    conn.execute("BEGIN").await?;
                    postgres::lock_chain_head(conn).await?
                }
            };
            (ctx.head_seq, ctx.head_hash) = (head.seq, head.hash);
            // Event times never go backwards, even if the clock does, so
            // time filters can be turned into seq bounds.
            if let Some(last) = head.ts.as_deref().and_then(clock::parse)
                && last > ctx.now
            {
                ctx.now = last;
            }
            let start_seq = ctx.head_seq;
            ctx.pending_events.clear();
            // Each job runs inside its own savepoint, so a failing job rolls
            // back alone. Releasing one and opening the next is one round
            // trip.
            ctx.execute("SAVEPOINT job").await?;
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
                    ctx.execute("ROLLBACK TO job").await?;
                    (ctx.head_seq, ctx.head_hash) = (seq, hash);
                    ctx.effects.truncate(effects);
                    ctx.pending_events.truncate(events);
                }
                if i + 1 < jobs {
                    ctx.execute("RELEASE job; SAVEPOINT job").await?;
                } else {
                    ctx.execute("RELEASE job").await?;
                }
            }
            ctx.flush_events().await?;
            if ctx.head_seq != start_seq {
                let signature = signer.sign(&ctx.head_hash);
                let (seq, hash) = (ctx.head_seq, ctx.head_hash.clone());
                ctx.exec(stmt!(
                    sqlite: "INSERT INTO audit_signatures (seq, hash, signature, public_key) VALUES (?, ?, ?, ?)",
                    postgres: "INSERT INTO audit_signatures (seq, hash, signature, public_key) VALUES ($1, $2, $3, $4)",
                    [seq, &hash, &signature, signer.public_hex()],
                ))
                .await?;
                signed = Some(checkpoints::Checkpoint {
                    seq,
                    hash,
                    ts: clock::fmt(ctx.now),
                    signature,
                    key_id: signer.public_hex().to_string(),
                });
            }
            if let Db::Postgres(conn) = ctx.conn.as_mut() {
                // Delivered to every replica's listener at COMMIT, and only
                // if it commits.
                let notes = notifications(&ctx.effects);
                if !notes.is_empty() {
                    sqlx::query("SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n")
                        .bind(NOTIFY_CHANNEL)
                        .bind(&notes)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            ctx.execute("COMMIT").await?;
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
                let failure = CommitFailure::of(&e);
                if failure.unavailable {
                    tracing::warn!(error = %e, "write batch failed: the database is unreachable");
                    self.broken = self.reconnect.is_some();
                } else {
                    tracing::error!(error = %e, "write batch failed; rolled back");
                }
                let _ = ctx.execute("ROLLBACK").await;
                // Jobs never reached (drained but unfinished) drop their
                // senders, which their callers see as an error.
                batch.clear();
                for f in finishers {
                    f(Some(failure.clone()));
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
