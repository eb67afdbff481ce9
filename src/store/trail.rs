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

/// Above this many distinct matching values, a glob or prefix is cheaper to
/// answer by walking the trail newest first than by one lookup per value.
const MAX_FANOUT: usize = 32;

#[derive(Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// A SQL condition with its `?` values, in order.
type Cond = (String, Vec<Bind>);

/// Answers a filter newest first. Every access path reads rows in seq order
/// from an index, so LIMIT stops early however long the trail is:
/// - `request` and `actor` are equality lookups on their indexes;
/// - an `action` glob or `kind` prefix resolves through `audit_facets` to the
///   few values it matches, each an index lookup, merged here;
/// - `since` / `until` become seq bounds (event times never go backwards),
///   found with one probe of the ts index.
pub async fn query(pool: &SqlitePool, f: &AuditFilter) -> AppResult<Vec<StoredEvent>> {
    let mut conn = pool.acquire().await?;
    let mut bounds: Vec<Cond> = Vec::new();
    if let Some(since) = f.since {
        match first_seq_at_or_after(&mut conn, since).await? {
            Some(lo) => bounds.push(("seq >= ?".into(), vec![Bind::Int(lo)])),
            None => return Ok(vec![]),
        }
    }
    if let Some(until) = f.until
        && let Some(hi) = first_seq_at_or_after(&mut conn, until).await?
    {
        bounds.push(("seq < ?".into(), vec![Bind::Int(hi)]));
    }
    if let Some(before) = f.before {
        bounds.push(("seq < ?".into(), vec![Bind::Int(before)]));
    }

    let glob = |a: &str| a.contains(['*', '?', '[']);
    let mut fixed: Vec<Cond> = Vec::new();
    if let Some(r) = f.request_id {
        fixed.push(("request_id = ?".into(), vec![Bind::Text(r.to_string())]));
    }
    if let Some(a) = &f.actor {
        fixed.push(("actor = ?".into(), vec![Bind::Text(a.clone())]));
    }
    // The column a fan-out runs over, with the values it takes.
    let mut fan: Option<(&str, Vec<String>)> = None;
    match &f.action {
        Some(a) if !glob(a) => fixed.push(("action = ?".into(), vec![Bind::Text(a.clone())])),
        Some(a) => {
            let values =
                facet_values(&mut conn, "action", "value GLOB ?", std::slice::from_ref(a)).await?;
            if fixed.is_empty() && values.len() <= MAX_FANOUT {
                fan = Some(("action", values));
            } else {
                fixed.push(("+action GLOB ?".into(), vec![Bind::Text(a.clone())]));
            }
        }
        None => {}
    }
    match &f.kind {
        Some(k) if !k.ends_with('.') => {
            fixed.push(("kind = ?".into(), vec![Bind::Text(k.clone())]))
        }
        Some(k) => {
            let (lo, hi) = (k.clone(), format!("{}/", k.trim_end_matches('.')));
            if fixed.is_empty() && fan.is_none() {
                let values = facet_values(
                    &mut conn,
                    "kind",
                    "value >= ? AND value < ?",
                    &[lo.clone(), hi.clone()],
                )
                .await?;
                if values.len() <= MAX_FANOUT {
                    fan = Some(("kind", values));
                }
            }
            if fan.as_ref().is_none_or(|(col, _)| *col != "kind") {
                fixed.push((
                    "+kind >= ? AND +kind < ?".into(),
                    vec![Bind::Text(lo), Bind::Text(hi)],
                ));
            }
        }
        None => {}
    }
    fixed.extend(bounds);

    match fan {
        None => run(&mut conn, &select(&fixed), all_binds(&fixed), f.limit).await,
        Some((_, values)) if values.is_empty() => Ok(vec![]),
        Some((column, values)) => {
            // One statement: each value walks its own index backwards for at
            // most `limit` rows, and SQLite merges them, so only the final
            // `limit` rows are decoded here.
            let mut parts = Vec::with_capacity(values.len());
            let mut binds = Vec::new();
            for v in values {
                let mut conds = fixed.clone();
                conds.push((format!("{column} = ?"), vec![Bind::Text(v)]));
                parts.push(format!(
                    "SELECT * FROM ({} ORDER BY seq DESC LIMIT ?)",
                    select(&conds)
                ));
                binds.extend(all_binds(&conds));
                binds.push(Bind::Int(f.limit as i64));
            }
            let sql = format!("SELECT {COLUMNS} FROM ({})", parts.join(" UNION ALL "));
            run(&mut conn, &sql, binds, f.limit).await
        }
    }
}

fn select(conds: &[Cond]) -> String {
    let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1");
    for (c, _) in conds {
        sql.push_str(" AND ");
        sql.push_str(c);
    }
    sql
}

fn all_binds(conds: &[Cond]) -> Vec<Bind> {
    conds.iter().flat_map(|(_, b)| b.iter().cloned()).collect()
}

/// Runs `sql` newest first with `limit`.
async fn run(
    conn: &mut sqlx::SqliteConnection,
    sql: &str,
    binds: Vec<Bind>,
    limit: u32,
) -> AppResult<Vec<StoredEvent>> {
    let sql = format!("{sql} ORDER BY seq DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, StoredEvent>(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(n) => q.bind(n),
        };
    }
    Ok(q.bind(limit as i64).fetch_all(&mut *conn).await?)
}

async fn facet_values(
    conn: &mut sqlx::SqliteConnection,
    facet: &str,
    cond: &str,
    binds: &[String],
) -> AppResult<Vec<String>> {
    let sql = format!(
        "SELECT value FROM audit_facets WHERE facet = ? AND {cond} LIMIT {}",
        MAX_FANOUT + 1
    );
    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(facet);
    for b in binds {
        q = q.bind(b);
    }
    Ok(q.fetch_all(&mut *conn).await?)
}

/// The first event at or after `t`; ts is non-decreasing in seq.
async fn first_seq_at_or_after(
    conn: &mut sqlx::SqliteConnection,
    t: DateTime<Utc>,
) -> AppResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM audit_events WHERE ts >= ? ORDER BY ts, seq LIMIT 1")
            .bind(clock::fmt(t))
            .fetch_optional(&mut *conn)
            .await?,
    )
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
        if let Err(b) = v.stored(e) {
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
