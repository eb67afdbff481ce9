//! Reading the audit trail: filtered queries (the API and `/audit`),
//! streaming export (NDJSON / CSV) and verification of the stored chain.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::SqlitePool;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::{Break, CSV_HEADER, ChainVerifier, ExportLine, Report, StoredEvent};
use crate::clock;
use crate::error::AppResult;

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub request_id: Option<Uuid>,
    pub actor: Option<String>,
    /// Glob on the request's action, e.g. `db.*`.
    pub action: Option<String>,
    /// Exact kind, or a prefix ending in `.` (`decision.`).
    pub kind: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Events with a seq below this (the cursor); newest first.
    pub before: Option<i64>,
    pub limit: u32,
}

/// An event as the API shows it: `data` as JSON, hashes included.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    pub ts: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub action: Option<String>,
    pub kind: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<StoredEvent> for AuditEventView {
    fn from(e: StoredEvent) -> Self {
        Self {
            seq: e.seq,
            ts: e.ts,
            actor: e.actor,
            request_id: (!e.request_id.is_empty()).then_some(e.request_id),
            action: (!e.action.is_empty()).then_some(e.action),
            kind: e.kind,
            data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null),
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

const COLUMNS: &str = "seq, ts, actor, request_id, action, kind, data, prev_hash, hash";

enum Bind {
    Text(String),
    Int(i64),
}

/// More distinct values than this and a glob or prefix is answered by one
/// plain query instead of one index walk per value.
const MAX_EXPANDED: usize = 256;

/// Events newest first.
///
/// Each filter has an index on `(column, seq)`, so an exact value walks
/// its index backwards from the newest event and stops after `limit`. A
/// glob on the action or a kind prefix matches several values, whose index
/// ranges are not in `seq` order together: SQLite would read and sort every
/// match (hundreds of thousands of rows for `db.*`). Instead the distinct
/// values that match are found by hopping through the index (one seek per
/// value), and each gets its own backward walk of at most `limit` rows,
/// merged by `seq`.
pub async fn query(pool: &SqlitePool, f: &AuditFilter) -> AppResult<Vec<StoredEvent>> {
    let mut conn = pool.acquire().await?;
    if let Some(glob) = f.action.as_deref().filter(|a| is_glob(a)) {
        let actions = distinct(&mut conn, "action", literal_prefix(glob), Some(glob)).await?;
        if actions.len() <= MAX_EXPANDED {
            return union(&mut conn, f, "action", actions).await;
        }
    } else if let Some(prefix) = f.kind.as_deref().filter(|k| k.ends_with('.')) {
        let kinds = distinct(&mut conn, "kind", prefix, None).await?;
        if kinds.len() <= MAX_EXPANDED {
            return union(&mut conn, f, "kind", kinds).await;
        }
    }
    let (clause, binds) = conditions(f, None);
    let sql =
        format!("SELECT {COLUMNS} FROM audit_events WHERE {clause} ORDER BY seq DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, StoredEvent>(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(n) => q.bind(n),
        };
    }
    Ok(q.bind(f.limit as i64).fetch_all(&mut *conn).await?)
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The part of a glob before its first wildcard.
fn literal_prefix(glob: &str) -> &str {
    &glob[..glob.find(['*', '?', '[']).unwrap_or(glob.len())]
}

/// The distinct non-empty values of `column` that start with `prefix`
/// (and match `glob`, if given), in one index seek each.
async fn distinct(
    conn: &mut sqlx::SqliteConnection,
    column: &'static str,
    prefix: &str,
    glob: Option<&str>,
) -> AppResult<Vec<String>> {
    let sql = format!(
        "WITH RECURSIVE v(x) AS ( \
           SELECT (SELECT MIN({column}) FROM audit_events WHERE {column} != '' AND {column} >= ?1) \
           UNION ALL \
           SELECT (SELECT MIN({column}) FROM audit_events WHERE {column} != '' AND {column} > v.x) \
           FROM v WHERE v.x IS NOT NULL AND substr(v.x, 1, length(?1)) = ?1 \
         ) \
         SELECT x FROM v WHERE x IS NOT NULL AND substr(x, 1, length(?1)) = ?1 AND (?2 IS NULL OR x GLOB ?2) \
         LIMIT {}",
        MAX_EXPANDED + 1
    );
    Ok(sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
        .bind(prefix)
        .bind(glob)
        .fetch_all(&mut *conn)
        .await?)
}

/// One backward index walk per value of `column`, merged by seq.
async fn union(
    conn: &mut sqlx::SqliteConnection,
    f: &AuditFilter,
    column: &'static str,
    values: Vec<String>,
) -> AppResult<Vec<StoredEvent>> {
    if values.is_empty() {
        return Ok(vec![]);
    }
    let mut sql = format!("SELECT {COLUMNS} FROM (");
    let mut all = vec![];
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        let (clause, binds) = conditions(f, Some((column, v)));
        sql.push_str(&format!(
            "SELECT * FROM (SELECT {COLUMNS} FROM audit_events WHERE {clause} ORDER BY seq DESC LIMIT ?)"
        ));
        all.extend(binds);
        all.push(Bind::Int(f.limit as i64));
    }
    sql.push_str(") ORDER BY seq DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, StoredEvent>(sqlx::AssertSqlSafe(sql));
    for b in all {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(n) => q.bind(n),
        };
    }
    Ok(q.bind(f.limit as i64).fetch_all(&mut *conn).await?)
}

/// The WHERE clause for `f`; `exact` replaces the action or kind filter
/// with one exact value.
fn conditions(f: &AuditFilter, exact: Option<(&'static str, String)>) -> (String, Vec<Bind>) {
    let mut sql = String::from("1 = 1");
    let mut binds = vec![];
    // `!= ''` lets SQLite use the partial indexes on request_id and action
    // (they leave out events that belong to no request).
    if let Some(r) = f.request_id {
        sql.push_str(" AND request_id = ? AND request_id != ''");
        binds.push(Bind::Text(r.to_string()));
    }
    if let Some(a) = &f.actor {
        sql.push_str(" AND actor = ?");
        binds.push(Bind::Text(a.clone()));
    }
    let (exact_action, exact_kind) = match exact {
        Some(("action", v)) => (Some(v), None),
        Some((_, v)) => (None, Some(v)),
        None => (None, None),
    };
    if let Some(a) = exact_action {
        sql.push_str(" AND action = ? AND action != ''");
        binds.push(Bind::Text(a));
    } else if let Some(a) = &f.action {
        if is_glob(a) {
            sql.push_str(" AND action GLOB ? AND action != ''");
        } else {
            sql.push_str(" AND action = ? AND action != ''");
        }
        binds.push(Bind::Text(a.clone()));
    }
    if let Some(k) = exact_kind {
        sql.push_str(" AND kind = ?");
        binds.push(Bind::Text(k));
    } else if let Some(k) = &f.kind {
        if let Some(prefix) = k.strip_suffix('.') {
            sql.push_str(" AND kind >= ? AND kind < ?");
            binds.push(Bind::Text(format!("{prefix}.")));
            binds.push(Bind::Text(format!("{prefix}/")));
        } else {
            sql.push_str(" AND kind = ?");
            binds.push(Bind::Text(k.clone()));
        }
    }
    if let Some(s) = f.since {
        sql.push_str(" AND ts >= ?");
        binds.push(Bind::Text(clock::fmt(s)));
    }
    if let Some(u) = f.until {
        sql.push_str(" AND ts < ?");
        binds.push(Bind::Text(clock::fmt(u)));
    }
    if let Some(b) = f.before {
        sql.push_str(" AND seq < ?");
        binds.push(Bind::Int(b));
    }
    (sql, binds)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    #[sqlx(flatten)]
    event: StoredEvent,
    signature: Option<String>,
    signed_hash: Option<String>,
}

const EXPORT_SQL: &str = "SELECT e.seq, e.ts, e.actor, e.request_id, e.action, e.kind, e.data, e.prev_hash, e.hash, \
     s.signature, s.hash AS signed_hash FROM audit_events e LEFT JOIN audit_signatures s ON s.seq = e.seq ORDER BY e.seq";

/// Streams the whole trail, oldest first, in chunks of about 64 KiB. One
/// SELECT is one read snapshot, so the export is consistent.
pub async fn export(
    pool: &SqlitePool,
    format: ExportFormat,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> AppResult<()> {
    let mut rows = sqlx::query_as::<_, ExportRow>(EXPORT_SQL).fetch(pool);
    let mut buf: Vec<u8> = Vec::with_capacity(80 * 1024);
    let mut csv_writer = (format == ExportFormat::Csv).then(csv_chunk_writer);
    if let Some(w) = csv_writer.as_mut() {
        w.write_record(CSV_HEADER).map_err(|e| anyhow::anyhow!(e))?;
    }
    while let Some(row) = rows.try_next().await? {
        let e = &row.event;
        match csv_writer.as_mut() {
            Some(w) => {
                let seq = e.seq.to_string();
                w.write_record([
                    seq.as_str(),
                    &e.ts,
                    &e.actor,
                    &e.request_id,
                    &e.action,
                    &e.kind,
                    &e.data,
                    &e.prev_hash,
                    &e.hash,
                    row.signature.as_deref().unwrap_or(""),
                ])
                .map_err(|e| anyhow::anyhow!(e))?;
                if w.get_ref().len() >= 64 * 1024 {
                    let full = std::mem::replace(w, csv_chunk_writer());
                    let chunk = full
                        .into_inner()
                        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
                    if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return Ok(());
                    }
                }
            }
            None => {
                let data: &RawValue = serde_json::from_str(&e.data)
                    .map_err(|err| anyhow::anyhow!("event {} has bad data: {err}", e.seq))?;
                let line = ExportLine {
                    seq: e.seq,
                    ts: &e.ts,
                    actor: &e.actor,
                    request_id: &e.request_id,
                    action: &e.action,
                    kind: &e.kind,
                    data,
                    prev_hash: &e.prev_hash,
                    hash: &e.hash,
                    signature: row.signature.as_deref(),
                };
                serde_json::to_writer(&mut buf, &line).map_err(|e| anyhow::anyhow!(e))?;
                buf.push(b'\n');
                if buf.len() >= 64 * 1024 {
                    let chunk = std::mem::replace(&mut buf, Vec::with_capacity(80 * 1024));
                    if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    if let Some(w) = csv_writer {
        buf = w.into_inner().map_err(|e| anyhow::anyhow!(e.to_string()))?;
    }
    if !buf.is_empty() {
        let _ = tx.send(Ok(Bytes::from(buf))).await;
    }
    Ok(())
}

fn csv_chunk_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().from_writer(Vec::with_capacity(80 * 1024))
}

/// Recomputes the stored chain and checks every head signature.
pub async fn verify(pool: &SqlitePool, key: VerifyingKey) -> AppResult<Result<Report, Break>> {
    let mut v = ChainVerifier::new(key);
    let mut rows = sqlx::query_as::<_, ExportRow>(EXPORT_SQL).fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let e = &row.event;
        if let Err(b) = v.event(
            e.seq,
            &e.ts,
            &e.actor,
            &e.request_id,
            &e.action,
            &e.kind,
            &e.data,
            &e.prev_hash,
            &e.hash,
        ) {
            return Ok(Err(b));
        }
        if let (Some(sig), Some(signed)) = (&row.signature, &row.signed_hash)
            && let Err(b) = v.signature(e.seq, signed, sig)
        {
            return Ok(Err(b));
        }
    }
    drop(rows);
    let orphan: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(s.seq) FROM audit_signatures s LEFT JOIN audit_events e ON e.seq = s.seq WHERE e.seq IS NULL",
    )
    .fetch_one(pool)
    .await?;
    if let Some(seq) = orphan {
        return Ok(Err(Break {
            seq,
            reason: format!(
                "a signature names event {seq}, which is missing: the trail was truncated"
            ),
        }));
    }
    Ok(v.finish())
}
