//! The outbox table: claim due rows lane by lane, record each outcome.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::clock;
use crate::error::AppResult;
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
pub async fn due(
    store: &Store,
    kinds: &[String],
    now: DateTime<Utc>,
    limit: i64,
) -> AppResult<Vec<OutboxItem>> {
    if kinds.is_empty() {
        return Ok(vec![]);
    }
    let marks = vec!["?"; kinds.len()].join(",");
    let sql = format!(
        "SELECT o.id, o.kind, o.lane, o.request_id, o.payload, o.attempts, o.created_at FROM outbox o \
         WHERE o.done_at IS NULL AND o.next_attempt_at <= ? AND o.kind IN ({marks}) \
         AND o.id = (SELECT MIN(id) FROM outbox WHERE lane = o.lane AND done_at IS NULL) \
         ORDER BY o.next_attempt_at, o.id LIMIT ?"
    );
    let mut q = sqlx::query_as::<_, OutboxItem>(sqlx::AssertSqlSafe(sql)).bind(clock::fmt(now));
    for k in kinds {
        q = q.bind(k);
    }
    Ok(q.bind(limit).fetch_all(&store.pool).await?)
}

/// Whether `item` is still as `due` read it: not finished, and not
/// attempted since. `due` reads a snapshot; one taken just before another
/// attempt on the row committed can still list the row after its lane is
/// free again, and must not deliver it twice.
pub async fn still_due(store: &Store, item: &OutboxItem) -> AppResult<bool> {
    let row: Option<(Option<String>, i64)> =
        sqlx::query_as("SELECT done_at, attempts FROM outbox WHERE id = ?")
            .bind(item.id)
            .fetch_optional(&store.pool)
            .await?;
    Ok(matches!(row, Some((None, attempts)) if attempts == item.attempts))
}

/// When the next undone row becomes due, if any.
pub async fn next_due(store: &Store, kinds: &[String]) -> AppResult<Option<DateTime<Utc>>> {
    if kinds.is_empty() {
        return Ok(None);
    }
    let marks = vec!["?"; kinds.len()].join(",");
    let sql = format!(
        "SELECT MIN(next_attempt_at) FROM outbox WHERE done_at IS NULL AND kind IN ({marks})"
    );
    let mut q = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql));
    for k in kinds {
        q = q.bind(k);
    }
    Ok(q.fetch_one(&store.pool)
        .await?
        .as_deref()
        .and_then(clock::parse))
}

pub async fn backlog(store: &Store) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL")
            .fetch_one(&store.pool)
            .await?,
    )
}

/// Whether a row of `kind` queued after `item` in its lane is still undone.
pub async fn later_queued(store: &Store, item: &OutboxItem, kind: &str) -> AppResult<bool> {
    let later: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM outbox WHERE lane = ? AND kind = ? AND id > ? AND done_at IS NULL LIMIT 1",
    )
    .bind(&item.lane)
    .bind(kind)
    .bind(item.id)
    .fetch_optional(&store.pool)
    .await?;
    Ok(later.is_some())
}

/// Finishes row `id` as delivered after `attempts` attempts.
pub async fn delivered(ctx: &mut WriteCtx, id: i64, attempts: i64) -> AppResult<()> {
    let now = ctx.now_str();
    sqlx::query(
        "UPDATE outbox SET done_at = ?, outcome = 'delivered', attempts = ?, last_error = NULL WHERE id = ?",
    )
    .bind(&now)
    .bind(attempts)
    .bind(id)
    .execute(&mut ctx.conn)
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
    sqlx::query("UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?")
        .bind(attempts)
        .bind(error)
        .bind(clock::fmt(at))
        .bind(id)
        .execute(&mut ctx.conn)
        .await?;
    Ok(())
}

/// Finishes row `id` as failed for good.
pub async fn failed(ctx: &mut WriteCtx, id: i64, attempts: i64, error: &str) -> AppResult<()> {
    let now = ctx.now_str();
    sqlx::query(
        "UPDATE outbox SET done_at = ?, outcome = 'failed', attempts = ?, last_error = ? WHERE id = ?",
    )
    .bind(&now)
    .bind(attempts)
    .bind(error)
    .bind(id)
    .execute(&mut ctx.conn)
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
    Ok(sqlx::query_as(
        "SELECT id, kind, lane, request_id, payload, attempts, next_attempt_at, last_error, outcome, done_at \
         FROM outbox ORDER BY id",
    )
    .fetch_all(&store.pool)
    .await?)
}
