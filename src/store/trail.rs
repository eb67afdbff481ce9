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

pub async fn query(pool: &SqlitePool, f: &AuditFilter) -> AppResult<Vec<StoredEvent>> {
    let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1");
    let mut binds: Vec<String> = vec![];
    if let Some(r) = f.request_id {
        sql.push_str(" AND request_id = ?");
        binds.push(r.to_string());
    }
    if let Some(a) = &f.actor {
        sql.push_str(" AND actor = ?");
        binds.push(a.clone());
    }
    if let Some(a) = &f.action {
        if a.contains(['*', '?', '[']) {
            sql.push_str(" AND action GLOB ? AND action != ''");
        } else {
            sql.push_str(" AND action = ?");
        }
        binds.push(a.clone());
    }
    if let Some(k) = &f.kind {
        if let Some(prefix) = k.strip_suffix('.') {
            sql.push_str(" AND kind >= ? AND kind < ?");
            binds.push(format!("{prefix}."));
            binds.push(format!("{prefix}/"));
        } else {
            sql.push_str(" AND kind = ?");
            binds.push(k.clone());
        }
    }
    if let Some(s) = f.since {
        sql.push_str(" AND ts >= ?");
        binds.push(clock::fmt(s));
    }
    if let Some(u) = f.until {
        sql.push_str(" AND ts < ?");
        binds.push(clock::fmt(u));
    }
    if let Some(b) = f.before {
        sql.push_str(" AND seq < ?");
        binds.push(b.to_string());
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, StoredEvent>(sqlx::AssertSqlSafe(sql));
    for b in &binds {
        // seq cursors compare as integers
        if let Ok(n) = b.parse::<i64>()
            && f.before == Some(n)
        {
            q = q.bind(n);
        } else {
            q = q.bind(b);
        }
    }
    Ok(q.bind(f.limit as i64).fetch_all(pool).await?)
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
