//! The outbox table: claim due rows lane by lane, record each outcome.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::clock;
use crate::error::AppResult;
use crate::store::backend::Db;
use crate::store::postgres::Backend;
use crate::store::{Store, WriteCtx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: String,
    pub lane: String,
    pub request_id: Option<String>,
    pub payload: String,
    pub attempts: i64,
    pub created_at: String,
}

impl OutboxItem {
    pub fn request_uuid(&self) -> Option<Uuid> {
        self.request_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
    }
    pub fn payload_json(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or(Value::Null)
    }
}

/// The head row of each lane that is due now, for the given kinds.
///
/// On PostgreSQL several replicas share the outbox, so the rows are also
/// claimed: each gets a lease (`locked_by` this replica, `locked_until`
/// `now + lease`) in the same statement, with `FOR UPDATE SKIP LOCKED` so
/// two replicas claiming at once take different rows. A row leased to
/// another replica is not due here until its lease has passed; then it is
/// anyone's (the replica that held it died mid-delivery). Only a lane's
/// head is ever due, on either backend, so a message update never
/// overtakes its post wherever it runs.
///
/// Lanes in `busy` (a delivery of theirs is in flight here) are left out:
/// their head can change under the delivery (a checkpoint sink supersedes
/// the row being delivered and queues a new one), and a new head claimed
/// while its lane is busy could not be attempted, so it would sit out the
/// whole lease before anyone tried it.
pub async fn due(
    store: &Store,
    kinds: &[String],
    busy: &[String],
    now: DateTime<Utc>,
    limit: i64,
    lease: std::time::Duration,
) -> AppResult<Vec<OutboxItem>> {
    if kinds.is_empty() {
        return Ok(vec![]);
    }
    let now = clock::fmt(now);
    match store.db() {
        Db::Sqlite(pool) => {
            let marks = vec!["?"; kinds.len()].join(",");
            let sql = format!(
                "SELECT o.id, o.kind, o.lane, o.request_id, o.payload, o.attempts, o.created_at FROM outbox o \
                 WHERE o.done_at IS NULL AND o.next_attempt_at <= ? AND o.kind IN ({marks}){} \
                 AND o.id = (SELECT MIN(id) FROM outbox WHERE lane = o.lane AND done_at IS NULL) \
                 ORDER BY o.next_attempt_at, o.id LIMIT ?",
                not_busy("o.lane", busy.len())
            );
            let mut q = sqlx::query_as::<_, OutboxItem>(sqlx::AssertSqlSafe(sql)).bind(&now);
            for k in kinds.iter().chain(busy) {
                q = q.bind(k);
            }
            Ok(q.bind(limit).fetch_all(pool).await?)
        }
        Db::Postgres(pool) => Ok(sqlx::query_as::<_, OutboxItem>(
            "UPDATE outbox AS u SET locked_by = $3, \
                 locked_until = $1::timestamptz + make_interval(secs => $2) \
             FROM (SELECT o.id FROM outbox o \
                   WHERE o.done_at IS NULL AND o.next_attempt_at <= $1::timestamptz \
                   AND o.kind = ANY($4) AND NOT (o.lane = ANY($6)) \
                   AND (o.locked_until IS NULL OR o.locked_until <= $1::timestamptz) \
                   AND o.id = (SELECT MIN(id) FROM outbox WHERE lane = o.lane AND done_at IS NULL) \
                   ORDER BY o.next_attempt_at, o.id LIMIT $5 \
                   FOR UPDATE OF o SKIP LOCKED) AS claimed \
             WHERE u.id = claimed.id \
             RETURNING u.id, u.kind, u.lane, u.request_id::text AS request_id, u.payload::text AS payload, \
                 u.attempts::bigint AS attempts, cs_ts(u.created_at) AS created_at",
        )
        .bind(&now)
        .bind(lease.as_secs_f64())
        .bind(&*store.replica)
        .bind(kinds)
        .bind(limit)
        .bind(busy)
        .fetch_all(pool)
        .await?),
    }
}

/// Whether `item` is still as `due` read it: not finished, not attempted
/// since, and (PostgreSQL) still leased to this replica. `due` reads a
/// snapshot; one taken just before another attempt on the row committed
/// can still list the row after its lane is free again, and must not
/// deliver it twice.
pub async fn still_due(store: &Store, item: &OutboxItem) -> AppResult<bool> {
    let row: Option<(Option<String>, i64, Option<String>)> = on!(store.db(),
        sqlite: "SELECT done_at, attempts, NULL FROM outbox WHERE id = ?",
        postgres: "SELECT cs_ts(done_at), attempts::bigint, locked_by FROM outbox WHERE id = $1",
        |sql, e| sqlx::query_as(sql).bind(item.id).fetch_optional(e).await?);
    let ours = |by: &Option<String>| match store.backend() {
        Backend::Sqlite => true,
        Backend::Postgres => by.as_deref() == Some(&*store.replica),
    };
    Ok(matches!(row, Some((None, attempts, by)) if attempts == item.attempts && ours(&by)))
}

/// When the next undone row outside the `busy` lanes becomes due (or,
/// leased to another replica, free again), if any. A busy lane is looked
/// at again when its delivery finishes, so its rows must not wake the
/// worker (its head, due now, would every few milliseconds).
pub async fn next_due(
    store: &Store,
    kinds: &[String],
    busy: &[String],
) -> AppResult<Option<DateTime<Utc>>> {
    if kinds.is_empty() {
        return Ok(None);
    }
    let next: Option<String> = match store.db() {
        Db::Sqlite(pool) => {
            let marks = vec!["?"; kinds.len()].join(",");
            let sql = format!(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE done_at IS NULL AND kind IN ({marks}){}",
                not_busy("lane", busy.len())
            );
            let mut q = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql));
            for k in kinds.iter().chain(busy) {
                q = q.bind(k);
            }
            q.fetch_one(pool).await?
        }
        Db::Postgres(pool) => sqlx::query_scalar(
            "SELECT cs_ts(MIN(GREATEST(next_attempt_at, COALESCE(locked_until, next_attempt_at)))) \
                 FROM outbox WHERE done_at IS NULL AND kind = ANY($1) AND NOT (lane = ANY($2))",
        )
        .bind(kinds)
        .bind(busy)
        .fetch_one(pool)
        .await?,
    };
    Ok(next.as_deref().and_then(clock::parse))
}

/// SQLite's clause leaving out `n` busy lanes (none: no clause, as
/// `NOT IN ()` is not SQL).
fn not_busy(column: &str, n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    format!(" AND {column} NOT IN ({})", vec!["?"; n].join(","))
}

pub async fn backlog(store: &Store) -> AppResult<i64> {
    Ok(on!(store.db(),
        sqlite: "SELECT COUNT(*) FROM outbox WHERE done_at IS NULL",
        postgres: "SELECT COUNT(*) FROM outbox WHERE done_at IS NULL",
        |sql, e| sqlx::query_scalar(sql).fetch_one(e).await?))
}

/// Whether a row of `kind` queued after `item` in its lane is still undone.
pub async fn later_queued(store: &Store, item: &OutboxItem, kind: &str) -> AppResult<bool> {
    let later: Option<i64> = on!(store.db(),
        sqlite: "SELECT id FROM outbox WHERE lane = ? AND kind = ? AND id > ? AND done_at IS NULL LIMIT 1",
        postgres: "SELECT id FROM outbox WHERE lane = $1 AND kind = $2 AND id > $3 AND done_at IS NULL LIMIT 1",
        |sql, e| sqlx::query_scalar(sql)
            .bind(&item.lane)
            .bind(kind)
            .bind(item.id)
            .fetch_optional(e)
            .await?);
    Ok(later.is_some())
}

/// Finishes row `id` as delivered after `attempts` attempts.
pub async fn delivered(ctx: &mut WriteCtx, id: i64, attempts: i64) -> AppResult<()> {
    let now = ctx.now_str();
    ctx.exec(stmt!(
        sqlite: "UPDATE outbox SET done_at = ?, outcome = 'delivered', attempts = ?, last_error = NULL WHERE id = ?",
        postgres: "UPDATE outbox SET done_at = $1::timestamptz, outcome = 'delivered', attempts = $2, last_error = NULL, \
            locked_by = NULL, locked_until = NULL WHERE id = $3",
        [&now, attempts, id],
    ))
        .await?;
    Ok(())
}

/// Leaves row `id` undone, to be tried again at `at`.
pub async fn retry_at(
    ctx: &mut WriteCtx,
    id: i64,
    attempts: i64,
    error: &str,
    at: DateTime<Utc>,
) -> AppResult<()> {
    let at = clock::fmt(at);
    ctx.exec(stmt!(
        sqlite: "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
        postgres: "UPDATE outbox SET attempts = $1, last_error = $2, next_attempt_at = $3::timestamptz, \
            locked_by = NULL, locked_until = NULL WHERE id = $4",
        [attempts, error, &at, id],
    ))
        .await?;
    Ok(())
}

/// Finishes row `id` as failed for good.
pub async fn failed(ctx: &mut WriteCtx, id: i64, attempts: i64, error: &str) -> AppResult<()> {
    let now = ctx.now_str();
    ctx.exec(stmt!(
        sqlite: "UPDATE outbox SET done_at = ?, outcome = 'failed', attempts = ?, last_error = ? WHERE id = ?",
        postgres: "UPDATE outbox SET done_at = $1::timestamptz, outcome = 'failed', attempts = $2, last_error = $3, \
            locked_by = NULL, locked_until = NULL WHERE id = $4",
        [&now, attempts, error, id],
    ))
        .await?;
    Ok(())
}

/// A row with its bookkeeping, as an operator (or a test) inspects it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxEntry {
    pub id: i64,
    pub kind: String,
    pub lane: String,
    pub request_id: Option<String>,
    /// What the deliverer is handed, as JSON text.
    pub payload: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    /// `delivered`, `failed` or `superseded` once done.
    pub outcome: Option<String>,
    pub done_at: Option<String>,
}

/// Every row, oldest first.
pub async fn entries(store: &Store) -> AppResult<Vec<OutboxEntry>> {
    Ok(on!(store.db(),
        sqlite: "SELECT id, kind, lane, request_id, payload, attempts, next_attempt_at, last_error, outcome, done_at \
                 FROM outbox ORDER BY id",
        postgres: "SELECT id, kind, lane, request_id::text AS request_id, payload::text AS payload, \
                   attempts::bigint AS attempts, cs_ts(next_attempt_at) AS next_attempt_at, last_error, outcome, \
                   cs_ts(done_at) AS done_at FROM outbox ORDER BY id",
        |sql, e| sqlx::query_as(sql).fetch_all(e).await?))
}
