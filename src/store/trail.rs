//! Reading the audit trail: filtered queries (the API and `/audit`),
//! streaming export (NDJSON / CSV) and verification of the stored chain.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
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
            // One statement: each value walks its own index for at most
            // `limit` seq numbers (index only, no table rows), SQLite merges
            // those, and only the final `limit` rows are read and decoded.
            let mut parts = Vec::with_capacity(values.len());
            let mut binds = Vec::new();
            for v in values {
                let mut conds = fixed.clone();
                conds.push((format!("{column} = ?"), vec![Bind::Text(v)]));
                parts.push(format!(
                    "SELECT * FROM ({} ORDER BY seq DESC LIMIT ?)",
                    select_seq(&conds)
                ));
                binds.extend(all_binds(&conds));
                binds.push(Bind::Int(f.limit as i64));
            }
            binds.push(Bind::Int(f.limit as i64));
            let sql = format!(
                "SELECT {COLUMNS} FROM audit_events WHERE seq IN \
                 (SELECT seq FROM ({}) ORDER BY seq DESC LIMIT ?)",
                parts.join(" UNION ALL ")
            );
            run(&mut conn, &sql, binds, f.limit).await
        }
    }
}

fn select_seq(conds: &[Cond]) -> String {
    let mut sql = String::from("SELECT seq FROM audit_events WHERE 1 = 1");
    for (c, _) in conds {
        sql.push_str(" AND ");
        sql.push_str(c);
    }
    sql
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

// Export and verify read the whole trail. They use rusqlite, on blocking
// threads: sqlx copies every value of every row into an owned buffer and
// hands each row across threads, which capped a full-trail read at about
// 200,000 events/s; rusqlite reads each row in place. Both libraries link
// the same bundled SQLite.

/// The file behind a `db` setting: a path or a `sqlite:` URL.
pub fn db_file(db: &str) -> std::path::PathBuf {
    let path = db
        .strip_prefix("sqlite://")
        .or_else(|| db.strip_prefix("sqlite:"))
        .unwrap_or(db);
    std::path::PathBuf::from(path.split('?').next().unwrap_or(path))
}

fn open_read(db: &str) -> AppResult<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        db_file(db),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(bulk_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(bulk_error)?;
    Ok(conn)
}

fn bulk_error(e: rusqlite::Error) -> crate::error::AppError {
    crate::error::AppError::Internal(anyhow::anyhow!("reading the audit trail: {e}"))
}

const EXPORT_SQL: &str = "SELECT e.seq, e.ts, e.actor, e.request_id, e.action, e.kind, e.data, e.prev_hash, \
     e.hash, s.signature, s.hash FROM audit_events e LEFT JOIN audit_signatures s ON s.seq = e.seq";

/// One event row, borrowed from the statement: no copy per column.
struct RowRef<'r> {
    seq: i64,
    cols: [&'r str; 8],
    signature: Option<&'r str>,
    signed_hash: Option<&'r str>,
}

fn row_ref<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<RowRef<'r>> {
    let text = |i: usize| -> rusqlite::Result<&'r str> {
        row.get_ref(i)?.as_str().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    let opt = |i: usize| -> rusqlite::Result<Option<&'r str>> {
        row.get_ref(i)?.as_str_or_null().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(RowRef {
        seq: row.get(0)?,
        cols: [
            text(1)?,
            text(2)?,
            text(3)?,
            text(4)?,
            text(5)?,
            text(6)?,
            text(7)?,
            text(8)?,
        ],
        signature: opt(9)?,
        signed_hash: opt(10)?,
    })
}

/// Streams the whole trail, oldest first, with hashes and head signatures,
/// from one read transaction (a consistent snapshot).
pub async fn export(
    db: &str,
    format: ExportFormat,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> AppResult<()> {
    let db = db.to_string();
    tokio::task::spawn_blocking(move || export_blocking(&db, format, &tx))
        .await
        .map_err(|e| anyhow::anyhow!("export task failed: {e}"))?
}

fn export_blocking(
    db: &str,
    format: ExportFormat,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> AppResult<()> {
    let mut conn = open_read(db)?;
    let snapshot = conn.transaction().map_err(bulk_error)?;
    let mut stmt = snapshot
        .prepare(&format!("{EXPORT_SQL} ORDER BY e.seq"))
        .map_err(bulk_error)?;
    let mut rows = stmt.query([]).map_err(bulk_error)?;
    let mut buf: Vec<u8> = Vec::with_capacity(80 * 1024);
    let mut csv_writer = (format == ExportFormat::Csv).then(csv_chunk_writer);
    if let Some(w) = csv_writer.as_mut() {
        w.write_record(CSV_HEADER).map_err(|e| anyhow::anyhow!(e))?;
    }
    let send = |chunk: Vec<u8>| tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
    while let Some(row) = rows.next().map_err(bulk_error)? {
        let r = row_ref(row).map_err(bulk_error)?;
        let [ts, actor, request_id, action, kind, data, prev_hash, hash] = r.cols;
        match csv_writer.as_mut() {
            Some(w) => {
                let seq = r.seq.to_string();
                w.write_record([
                    seq.as_str(),
                    ts,
                    actor,
                    request_id,
                    action,
                    kind,
                    data,
                    prev_hash,
                    hash,
                    r.signature.unwrap_or(""),
                ])
                .map_err(|e| anyhow::anyhow!(e))?;
                if w.get_ref().len() >= 64 * 1024 {
                    let full = std::mem::replace(w, csv_chunk_writer());
                    if !send(
                        full.into_inner()
                            .map_err(|e| anyhow::anyhow!(e.to_string()))?,
                    ) {
                        return Ok(());
                    }
                }
            }
            None => {
                // `data` is written as stored: it is the JSON the hash covers.
                let line = ExportLine {
                    seq: r.seq,
                    ts,
                    actor,
                    request_id,
                    action,
                    kind,
                    data: raw_json(data)
                        .map_err(|err| anyhow::anyhow!("event {} has bad data: {err}", r.seq))?,
                    prev_hash,
                    hash,
                    signature: r.signature,
                };
                serde_json::to_writer(&mut buf, &line).map_err(|e| anyhow::anyhow!(e))?;
                buf.push(b'\n');
                if buf.len() >= 64 * 1024
                    && !send(std::mem::replace(&mut buf, Vec::with_capacity(80 * 1024)))
                {
                    return Ok(());
                }
            }
        }
    }
    if let Some(w) = csv_writer {
        buf = w.into_inner().map_err(|e| anyhow::anyhow!(e.to_string()))?;
    }
    if !buf.is_empty() {
        send(buf);
    }
    Ok(())
}

fn raw_json(text: &str) -> Result<&RawValue, serde_json::Error> {
    serde_json::from_str(text)
}

fn csv_chunk_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().from_writer(Vec::with_capacity(80 * 1024))
}

/// Recomputes the stored chain and checks every head signature. The trail
/// is cut in two at its middle and each half is checked on its own thread
/// and connection (it is append-only, so both read one consistent trail up
/// to the head seen at the start); the halves are then joined: the second
/// must start where the first ended, with the hash it ended on.
/// Trails at least this long are verified in two halves at once.
pub const SPLIT_AT: i64 = 20_000;

pub async fn verify(db: &str, key: VerifyingKey) -> AppResult<Result<Report, Break>> {
    let db = db.to_string();
    tokio::task::spawn_blocking(move || verify_blocking(&db, key))
        .await
        .map_err(|e| anyhow::anyhow!("verify task failed: {e}"))?
}

fn verify_blocking(db: &str, key: VerifyingKey) -> AppResult<Result<Report, Break>> {
    let conn = open_read(db)?;
    let head: Option<i64> = conn
        .query_row("SELECT MAX(seq) FROM audit_events", [], |r| r.get(0))
        .map_err(bulk_error)?;
    let head = head.unwrap_or(0).max(0);
    // The first part has no lower bound, so a row moved below seq 1 is read.
    let parts = if head < SPLIT_AT {
        vec![(None, head)]
    } else {
        vec![(None, head / 2), (Some(head / 2 + 1), head)]
    };
    let results: Vec<AppResult<Stretch>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|&(lo, hi)| scope.spawn(move || verify_stretch(db, key, lo, hi)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a verify thread panicked").into()))
            })
            .collect()
    });
    let mut total = Report {
        head_hash: super::audit::GENESIS.into(),
        ..Default::default()
    };
    for part in results {
        let part = part?;
        if let Some((seq, prev)) = &part.first {
            let expected = total.head_seq + 1;
            if *seq > expected {
                return Ok(Err(Break {
                    seq: expected,
                    reason: format!(
                        "event {expected} is missing (next present is {seq}): a row was deleted"
                    ),
                }));
            }
            if *prev != total.head_hash {
                return Ok(Err(Break {
                    seq: *seq,
                    reason: "prev_hash does not match the previous event's hash: rows were reordered, removed or edited".into(),
                }));
            }
        }
        let r = match part.result {
            Ok(r) => r,
            Err(b) => return Ok(Err(b)),
        };
        if r.events > 0 {
            total.events += r.events;
            total.head_seq = r.head_seq;
            total.head_hash = r.head_hash;
        }
        if r.signatures > 0 {
            total.signatures += r.signatures;
            total.last_signed_seq = r.last_signed_seq;
        }
    }
    let orphan: Option<i64> = conn
        .query_row(
            "SELECT MIN(s.seq) FROM audit_signatures s LEFT JOIN audit_events e ON e.seq = s.seq WHERE e.seq IS NULL",
            [],
            |r| r.get(0),
        )
        .map_err(bulk_error)?;
    if let Some(seq) = orphan {
        return Ok(Err(Break {
            seq,
            reason: format!(
                "a signature names event {seq}, which is missing: the trail was truncated"
            ),
        }));
    }
    if total.events > 0 && total.last_signed_seq != total.head_seq {
        return Ok(Err(Break {
            seq: total.last_signed_seq + 1,
            reason: "events after the last signed head are not covered by a signature".into(),
        }));
    }
    Ok(Ok(total))
}

/// A stretch's result, with the seq and claimed prev_hash of its first row.
struct Stretch {
    first: Option<(i64, String)>,
    result: Result<Report, Break>,
}

fn verify_stretch(db: &str, key: VerifyingKey, lo: Option<i64>, hi: i64) -> AppResult<Stretch> {
    let conn = open_read(db)?;
    let (sql, params): (String, Vec<i64>) = match lo {
        None => (
            format!("{EXPORT_SQL} WHERE e.seq <= ?1 ORDER BY e.seq"),
            vec![hi],
        ),
        Some(lo) => (
            format!("{EXPORT_SQL} WHERE e.seq BETWEEN ?1 AND ?2 ORDER BY e.seq"),
            vec![lo, hi],
        ),
    };
    let mut stmt = conn.prepare(&sql).map_err(bulk_error)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(bulk_error)?;
    let mut first = None;
    let mut v: Option<ChainVerifier> = None;
    while let Some(row) = rows.next().map_err(bulk_error)? {
        let r = row_ref(row).map_err(bulk_error)?;
        let [ts, actor, request_id, action, kind, data, prev_hash, hash] = r.cols;
        let verifier = v.get_or_insert_with(|| {
            first = Some((r.seq, prev_hash.to_string()));
            match lo {
                None => ChainVerifier::new(key),
                Some(lo) => ChainVerifier::resume(key, lo - 1, prev_hash),
            }
        });
        let checked = verifier
            .event(
                r.seq, ts, actor, request_id, action, kind, data, prev_hash, hash,
            )
            .and_then(|()| match (r.signature, r.signed_hash) {
                (Some(sig), Some(signed)) => verifier.signature(r.seq, signed, sig),
                _ => Ok(()),
            });
        if let Err(b) = checked {
            return Ok(Stretch {
                first,
                result: Err(b),
            });
        }
    }
    let result = Ok(v.map(ChainVerifier::into_stretch).unwrap_or_default());
    Ok(Stretch { first, result })
}
