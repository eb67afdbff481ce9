//! Reading the audit trail: filtered queries (the API and `/audit`),
//! streaming export (NDJSON / CSV) and verification of the stored chain.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Store;
use super::audit::{Break, CSV_HEADER, ChainVerifier, ExportLine, Report, StoredEvent};
use super::checkpoints::{self, Checkpoint};
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
pub async fn query(store: &Store, f: &AuditFilter) -> AppResult<Vec<StoredEvent>> {
    let pool = match store.db() {
        super::backend::Db::Sqlite(pool) => pool,
        super::backend::Db::Postgres(pool) => return query_postgres(pool, f).await,
    };
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
                // No request, no action: `*` must not match those either.
                fixed.push((
                    "+action != '' AND +action GLOB ?".into(),
                    vec![Bind::Text(a.clone())],
                ));
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

/// [`query`] on PostgreSQL: one statement with every filter, newest first.
/// Its planner picks the index (each filter has one ending in seq, as on
/// SQLite); times compare as text, which orders like time in the one
/// format the trail holds; a glob becomes an anchored regular expression.
async fn query_postgres(pool: &sqlx::PgPool, f: &AuditFilter) -> AppResult<Vec<StoredEvent>> {
    let mut conds: Vec<(&str, Bind)> = Vec::new();
    if let Some(since) = f.since {
        conds.push(("ts >= ?", Bind::Text(clock::fmt(since))));
    }
    if let Some(until) = f.until {
        conds.push(("ts < ?", Bind::Text(clock::fmt(until))));
    }
    if let Some(before) = f.before {
        conds.push(("seq < ?", Bind::Int(before)));
    }
    if let Some(r) = f.request_id {
        conds.push(("request_id = ?", Bind::Text(r.to_string())));
    }
    if let Some(a) = &f.actor {
        conds.push(("actor = ?", Bind::Text(a.clone())));
    }
    match &f.action {
        // An event about no request has no action, which no action
        // filter matches (not even `*`), as on SQLite.
        Some(a) if a.contains(['*', '?', '[']) => conds.push((
            "action <> '' AND action ~ ?",
            Bind::Text(super::backend::glob_to_regex(a)),
        )),
        Some(a) => conds.push(("action = ?", Bind::Text(a.clone()))),
        None => {}
    }
    match &f.kind {
        Some(k) if k.ends_with('.') => {
            conds.push(("kind >= ?", Bind::Text(k.clone())));
            conds.push((
                "kind < ?",
                Bind::Text(format!("{}/", k.trim_end_matches('.'))),
            ));
        }
        Some(k) => conds.push(("kind = ?", Bind::Text(k.clone()))),
        None => {}
    }
    let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1");
    for (c, _) in &conds {
        sql.push_str(" AND ");
        sql.push_str(c);
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    let sql = super::backend::numbered(&sql, 1);
    let mut q = sqlx::query_as::<_, StoredEvent>(sqlx::AssertSqlSafe(sql));
    for (_, b) in conds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(n) => q.bind(n),
        };
    }
    Ok(q.bind(f.limit as i64).fetch_all(pool).await?)
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

/// A signed chain head as stored: the head's seq and hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SignedHead {
    pub seq: i64,
    pub hash: String,
}

/// Every signed head, oldest first.
pub async fn signed_heads(store: &Store) -> AppResult<Vec<SignedHead>> {
    Ok(on!(store.db(),
        sqlite: "SELECT seq, hash FROM audit_signatures ORDER BY seq",
        postgres: "SELECT seq, hash FROM audit_signatures ORDER BY seq",
        |sql, e| sqlx::query_as(sql).fetch_all(e).await?))
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
    let mut encoder = ExportEncoder::new(format)?;
    let send = |chunk: Vec<u8>| tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
    while let Some(row) = rows.next().map_err(bulk_error)? {
        let r = row_ref(row).map_err(bulk_error)?;
        if let Some(chunk) = encoder.event(r.seq, r.cols, r.signature)?
            && !send(chunk)
        {
            return Ok(());
        }
    }
    let rest = encoder.finish()?;
    if !rest.is_empty() {
        send(rest);
    }
    Ok(())
}

/// Writes export rows (NDJSON or CSV) into chunks of about 64 KiB. Pure:
/// every backend feeds it the same fields in seq order, so their exports
/// are byte for byte the same.
pub struct ExportEncoder {
    buf: Vec<u8>,
    csv: Option<csv::Writer<Vec<u8>>>,
}

impl ExportEncoder {
    /// A CSV export starts with its header.
    pub fn new(format: ExportFormat) -> AppResult<Self> {
        let mut csv = (format == ExportFormat::Csv).then(csv_chunk_writer);
        if let Some(w) = csv.as_mut() {
            w.write_record(CSV_HEADER).map_err(|e| anyhow::anyhow!(e))?;
        }
        Ok(Self {
            buf: Vec::with_capacity(80 * 1024),
            csv,
        })
    }

    /// Adds one event (`cols`: ts, actor, request_id, action, kind, data,
    /// prev_hash, hash) with its head signature, if any; returns a chunk
    /// once one is full.
    pub fn event(
        &mut self,
        seq: i64,
        cols: [&str; 8],
        signature: Option<&str>,
    ) -> AppResult<Option<Vec<u8>>> {
        let [ts, actor, request_id, action, kind, data, prev_hash, hash] = cols;
        match self.csv.as_mut() {
            Some(w) => {
                let seq = seq.to_string();
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
                    signature.unwrap_or(""),
                ])
                .map_err(|e| anyhow::anyhow!(e))?;
                if w.get_ref().len() >= 64 * 1024 {
                    let full = std::mem::replace(w, csv_chunk_writer());
                    return Ok(Some(
                        full.into_inner()
                            .map_err(|e| anyhow::anyhow!(e.to_string()))?,
                    ));
                }
            }
            None => {
                // `data` is written as stored: it is the JSON the hash covers.
                let line = ExportLine {
                    seq,
                    ts,
                    actor,
                    request_id,
                    action,
                    kind,
                    data: raw_json(data)
                        .map_err(|err| anyhow::anyhow!("event {seq} has bad data: {err}"))?,
                    prev_hash,
                    hash,
                    signature,
                };
                serde_json::to_writer(&mut self.buf, &line).map_err(|e| anyhow::anyhow!(e))?;
                self.buf.push(b'\n');
                if self.buf.len() >= 64 * 1024 {
                    return Ok(Some(std::mem::replace(
                        &mut self.buf,
                        Vec::with_capacity(80 * 1024),
                    )));
                }
            }
        }
        Ok(None)
    }

    /// What is left after the last full chunk (possibly nothing).
    pub fn finish(self) -> AppResult<Vec<u8>> {
        match self.csv {
            Some(w) => Ok(w.into_inner().map_err(|e| anyhow::anyhow!(e.to_string()))?),
            None => Ok(self.buf),
        }
    }
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

/// A table row that disagrees with the events it was derived from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Mismatch {
    /// `request`, `permit`, `facet`, `key` or `identity`.
    pub subject: &'static str,
    /// The request id (a permit's `jti` is its request's id), `kind:VALUE` /
    /// `action:VALUE` for a facet, the key id, or the external chat account.
    pub id: String,
    /// The fields that differ (`status`, `decisions`, …), or `missing` /
    /// `extra` for a row the events call for or do not.
    pub fields: Vec<String>,
}

/// Everything `audit verify` checks: the chain with its signatures, and
/// the tables derived from it.
#[derive(Debug, Clone)]
pub struct Verification {
    pub chain: Result<Report, Break>,
    pub mismatches: Vec<Mismatch>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.chain.is_ok() && self.mismatches.is_empty()
    }
}

/// The whole trail from the store's own database, oldest first (the API's
/// export): rusqlite on SQLite's file, `COPY` on PostgreSQL, byte for byte
/// the same output.
pub async fn export_store(
    store: &Store,
    format: ExportFormat,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> AppResult<()> {
    match store.db() {
        super::backend::Db::Sqlite(_) => export(store.db_url(), format, tx).await,
        super::backend::Db::Postgres(pool) => {
            super::postgres::trail::export(pool, format, tx).await
        }
    }
}

/// [`verify_all`] on the store's own database.
pub async fn verify_store(store: &Store, key: VerifyingKey) -> AppResult<Verification> {
    match store.db() {
        super::backend::Db::Sqlite(_) => verify_all(store.db_url(), key).await,
        super::backend::Db::Postgres(pool) => verify_postgres(pool, key).await,
    }
}

/// On PostgreSQL: the chain with its signatures, the request table and the
/// permit redemptions replayed from the trail, and the keys, identity
/// links and facets: the same verdicts as SQLite's [`verify_all`].
pub async fn verify_postgres(pool: &sqlx::PgPool, key: VerifyingKey) -> AppResult<Verification> {
    let chain = super::postgres::trail::verify(pool, key).await?;
    let mut mismatches = super::requests::replay_all_postgres(pool).await?;
    mismatches.extend(super::derived::check_postgres(pool).await?);
    Ok(Verification { chain, mismatches })
}

/// [`verify`], plus the derived tables checked against the events, at the
/// same time as the two chain halves: the requests in one id range per core
/// and the small tables on one more thread, each on one read transaction,
/// so a live service's commits cannot look like disagreement.
pub async fn verify_all(db: &str, key: VerifyingKey) -> AppResult<Verification> {
    let db = db.to_string();
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let state = scope.spawn(|| verify_state_blocking(&db));
            let chain = verify_blocking(&db, key);
            let state = state
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a verify thread panicked").into()));
            Ok(Verification {
                chain: chain?,
                mismatches: state?,
            })
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("verify task failed: {e}"))?
}

struct OwnedEvent {
    kind: String,
    ts: String,
    actor: String,
    data: serde_json::Value,
}

fn verify_state_blocking(db: &str) -> AppResult<Vec<Mismatch>> {
    let splits = request_splits(db)?;
    let ranges: Vec<(Option<&str>, Option<&str>)> = std::iter::once(None)
        .chain(splits.iter().map(|s| Some(s.as_str())))
        .zip(splits.iter().map(|s| Some(s.as_str())).chain([None]))
        .collect();
    let panicked = || Err(anyhow::anyhow!("a verify thread panicked").into());
    std::thread::scope(|scope| {
        let others = scope.spawn(|| -> AppResult<Vec<Mismatch>> {
            let mut conn = open_read(db)?;
            let tx = conn.transaction().map_err(bulk_error)?;
            let mut out = Vec::new();
            facets_against_events(&tx, &mut out).map_err(bulk_error)?;
            keys_against_events(&tx, &mut out).map_err(bulk_error)?;
            identities_against_events(&tx, &mut out).map_err(bulk_error)?;
            Ok(out)
        });
        let parts: Vec<_> = ranges
            .iter()
            .map(|&(lo, hi)| {
                scope.spawn(move || -> AppResult<Vec<Mismatch>> {
                    let mut conn = open_read(db)?;
                    let tx = conn.transaction().map_err(bulk_error)?;
                    let mut out = Vec::new();
                    requests_against_events(&tx, lo, hi, &mut out).map_err(bulk_error)?;
                    Ok(out)
                })
            })
            .collect();
        let mut out = Vec::new();
        for part in parts {
            out.extend(part.join().unwrap_or_else(|_| panicked())?);
        }
        out.extend(others.join().unwrap_or_else(|_| panicked())?);
        Ok(out)
    })
}

/// Below this many requests, one thread replays them all.
const REPLAY_SPLIT_AT: i64 = 5_000;

/// Request ids that cut the requests into about equal ranges, one per core.
/// Each range is replayed on its own thread and read transaction: a
/// request's row, decisions, events and redemption all lie in one range,
/// so each is compared within one snapshot.
fn request_splits(db: &str) -> AppResult<Vec<String>> {
    let conn = open_read(db)?;
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM approval_requests", [], |r| r.get(0))
        .map_err(bulk_error)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    if count < REPLAY_SPLIT_AT || threads < 2 {
        return Ok(vec![]);
    }
    let mut stmt = conn
        .prepare("SELECT id FROM approval_requests ORDER BY id LIMIT 1 OFFSET ?")
        .map_err(bulk_error)?;
    let mut splits: Vec<String> = Vec::new();
    for i in 1..threads {
        let id: String = stmt
            .query_row([count * i / threads], |r| r.get(0))
            .map_err(bulk_error)?;
        if splits.last().is_none_or(|last| *last < id) {
            splits.push(id);
        }
    }
    Ok(splits)
}

/// Turns a row into `(group key, item)`, or skips it (`None`).
type ReadRow<T> = fn(&rusqlite::Row<'_>) -> rusqlite::Result<Option<(String, T)>>;

/// Reads rows sorted by their first column and hands them out grouped by it.
struct Groups<'s, T> {
    rows: rusqlite::Rows<'s>,
    peeked: Option<(String, T)>,
    done: bool,
    read: ReadRow<T>,
}

impl<'s, T> Groups<'s, T> {
    fn new(rows: rusqlite::Rows<'s>, read: ReadRow<T>) -> Self {
        Self {
            rows,
            peeked: None,
            done: false,
            read,
        }
    }

    /// The next row's key, reading ahead past rows `read` skips.
    fn peek(&mut self) -> rusqlite::Result<Option<&str>> {
        while self.peeked.is_none() && !self.done {
            match self.rows.next()? {
                None => self.done = true,
                Some(row) => self.peeked = (self.read)(row)?,
            }
        }
        Ok(self.peeked.as_ref().map(|(k, _)| k.as_str()))
    }

    /// Every item of the group with key `key` (empty if the next group is another).
    fn take(&mut self, key: &str) -> rusqlite::Result<Vec<T>> {
        let mut group = Vec::new();
        while self.peek()? == Some(key) {
            let (_, item) = self.peeked.take().expect("peeked");
            group.push(item);
        }
        Ok(group)
    }
}

/// One cell of a copied row, as SQLite typed it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    /// A real, a blob or text that is not UTF-8: never what a column holds.
    Other,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Null,
    Text(usize, usize),
    Int(i64),
    Other,
}

/// Rows copied out of a statement, `width` cells each, their text end to
/// end in one buffer that is reused: a whole-trail replay allocates per
/// group at most, not per cell.
struct Rowset {
    width: usize,
    text: String,
    slots: Vec<Slot>,
}

impl Rowset {
    fn new(width: usize) -> Self {
        Self {
            width,
            text: String::new(),
            slots: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.slots.len() / self.width
    }

    fn clear(&mut self) {
        self.text.clear();
        self.slots.clear();
    }

    fn cell(&self, row: usize, col: usize) -> Cell<'_> {
        match self.slots[row * self.width + col] {
            Slot::Null => Cell::Null,
            Slot::Text(a, b) => Cell::Text(&self.text[a..b]),
            Slot::Int(n) => Cell::Int(n),
            Slot::Other => Cell::Other,
        }
    }

    fn push_text(&mut self, s: &str) -> Slot {
        let start = self.text.len();
        self.text.push_str(s);
        Slot::Text(start, self.text.len())
    }

    fn push_row(&mut self, row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        use rusqlite::types::ValueRef;
        for i in 0..self.width {
            let slot = match row.get_ref(i)? {
                ValueRef::Null => Slot::Null,
                ValueRef::Integer(n) => Slot::Int(n),
                ValueRef::Text(t) => match std::str::from_utf8(t) {
                    Ok(s) => self.push_text(s),
                    Err(_) => Slot::Other,
                },
                ValueRef::Real(_) | ValueRef::Blob(_) => Slot::Other,
            };
            self.slots.push(slot);
        }
        Ok(())
    }

    /// Appends row `row` of `other`.
    fn push_from(&mut self, other: &Rowset, row: usize) {
        for col in 0..self.width {
            let slot = match other.cell(row, col) {
                Cell::Null => Slot::Null,
                Cell::Text(s) => self.push_text(s),
                Cell::Int(n) => Slot::Int(n),
                Cell::Other => Slot::Other,
            };
            self.slots.push(slot);
        }
    }
}

/// A statement's rows, sorted by their first column (a text key), handed
/// out a group of equal keys at a time.
struct Stream<'s> {
    rows: rusqlite::Rows<'s>,
    ahead: Rowset,
    group: Rowset,
    done: bool,
}

impl<'s> Stream<'s> {
    fn new(rows: rusqlite::Rows<'s>, width: usize) -> Self {
        Self {
            rows,
            ahead: Rowset::new(width),
            group: Rowset::new(width),
            done: false,
        }
    }

    /// The next row's key.
    fn key(&mut self) -> rusqlite::Result<Option<&str>> {
        if self.ahead.len() == 0 && !self.done {
            match self.rows.next()? {
                Some(row) => self.ahead.push_row(row)?,
                None => self.done = true,
            }
        }
        if self.ahead.len() == 0 {
            return Ok(None);
        }
        match self.ahead.cell(0, 0) {
            Cell::Text(k) => Ok(Some(k)),
            _ => Err(rusqlite::Error::InvalidColumnType(
                0,
                "id".into(),
                rusqlite::types::Type::Null,
            )),
        }
    }

    /// Reads the rows with key `key` into `group` (none if the next key is another).
    fn take(&mut self, key: &str) -> rusqlite::Result<()> {
        self.group.clear();
        while self.key()? == Some(key) {
            self.group.push_from(&self.ahead, 0);
            self.ahead.clear();
        }
        Ok(())
    }
}

/// `AND column >= lo AND column < hi`, for the bounds given.
fn range_sql(column: &str, lo: Option<&str>, hi: Option<&str>) -> String {
    let mut sql = String::new();
    if lo.is_some() {
        sql.push_str(&format!(" AND {column} >= :lo"));
    }
    if hi.is_some() {
        sql.push_str(&format!(" AND {column} < :hi"));
    }
    sql
}

/// Replays every request with an id in `lo..hi` from its events and
/// compares it with its row, its decisions and its permit's redemption: a
/// merge of four streams sorted by request id (the primary key,
/// `decisions_request`, `audit_events_request` and the redemptions' primary
/// key), in constant memory.
///
/// Each request is first compared through [`RawData`](crate::domain::replay::RawData):
/// the fold reads only the fields it needs, as borrowed JSON text, and
/// compares them with the row's cells byte for byte. Only when that finds
/// a difference, or cannot tell (escapes, unexpected types, bad data), is
/// the request read again and compared field by field the way every load
/// is ([`requests::state_differences`](super::requests::state_differences)),
/// which names the fields: so the fast reading can only ever send a
/// request to the exact check, never pass one the exact check would fail.
fn requests_against_events(
    tx: &rusqlite::Transaction<'_>,
    lo: Option<&str>,
    hi: Option<&str>,
    out: &mut Vec<Mismatch>,
) -> rusqlite::Result<()> {
    use super::requests;
    let query = |stmt: &'_ mut rusqlite::Statement<'_>| -> rusqlite::Result<()> {
        for (name, v) in [(":lo", lo), (":hi", hi)] {
            if let (Some(v), Some(i)) = (v, stmt.parameter_index(name)?) {
                stmt.raw_bind_parameter(i, v)?;
            }
        }
        Ok(())
    };
    let mut req_stmt = tx.prepare(&format!(
        "{} WHERE 1 = 1{} ORDER BY id",
        requests::SELECT,
        range_sql("id", lo, hi)
    ))?;
    let mut dec_stmt = tx.prepare(&format!(
        "SELECT request_id, principal, verdict, comment, channel, created_at FROM decisions \
         WHERE 1 = 1{} ORDER BY request_id, id",
        range_sql("request_id", lo, hi)
    ))?;
    let mut ev_stmt = tx.prepare(&format!(
        "SELECT request_id, kind, ts, actor, data FROM audit_events \
         WHERE request_id > ''{} ORDER BY request_id, seq",
        range_sql("request_id", lo, hi)
    ))?;
    let mut permit_stmt = tx.prepare(&format!(
        "SELECT jti, redeemed_by, key_id, redeemed_at FROM permit_redemptions \
         WHERE 1 = 1{} ORDER BY jti",
        range_sql("jti", lo, hi)
    ))?;
    for stmt in [&mut req_stmt, &mut dec_stmt, &mut ev_stmt, &mut permit_stmt] {
        query(stmt)?;
    }
    let mut reqs = Stream::new(req_stmt.raw_query(), REQUEST_COLUMNS);
    let mut decs = Stream::new(dec_stmt.raw_query(), 6);
    let mut evs = Stream::new(ev_stmt.raw_query(), 5);
    let mut permits = Stream::new(permit_stmt.raw_query(), 4);
    let mut key = String::new();
    loop {
        key.clear();
        let mut found = false;
        for s in [&mut reqs, &mut decs, &mut evs, &mut permits] {
            if let Some(k) = s.key()?
                && (!found || k < key.as_str())
            {
                key.clear();
                key.push_str(k);
                found = true;
            }
        }
        if !found {
            break;
        }
        for s in [&mut reqs, &mut decs, &mut evs, &mut permits] {
            s.take(&key)?;
        }
        let (row, decisions, events) = (&reqs.group, &decs.group, &evs.group);
        if row.len() + decisions.len() + events.len() > 0 {
            let fields = if row.len() == 0 {
                vec!["missing".to_string()]
            } else if request_agrees(row, decisions, events) {
                vec![]
            } else {
                request_differences(tx, &key)?
            };
            if !fields.is_empty() {
                out.push(Mismatch {
                    subject: "request",
                    id: key.clone(),
                    fields,
                });
            }
        }
        let redeemed =
            (0..events.len()).any(|i| events.cell(i, 1) == Cell::Text(super::derived::REDEEMED));
        if permits.group.len() > 0 || redeemed {
            let fields = redemption_differences(&key, &permits.group, events);
            if !fields.is_empty() {
                out.push(Mismatch {
                    subject: "permit",
                    id: key.clone(),
                    fields,
                });
            }
        }
    }
    Ok(())
}

/// The columns of [`requests::SELECT`](super::requests::SELECT).
const REQUEST_COLUMNS: usize = 27;

/// Whether a request's row and decisions certainly hold what its events
/// replay to. Columns in [`requests::SELECT`](super::requests::SELECT)
/// order; each compared as the per-load check's stored state reads it (a
/// text column as a JSON string, `details` and `approvers` as JSON text,
/// `required_approvals` as a number). `false` when in any doubt.
fn request_agrees(row: &Rowset, decisions: &Rowset, events: &Rowset) -> bool {
    use crate::domain::replay::{self, Event, Raw, RawData};
    let mut parsed = Vec::with_capacity(events.len());
    for i in 0..events.len() {
        let (Cell::Text(kind), Cell::Text(ts), Cell::Text(actor), Cell::Text(data)) = (
            events.cell(i, 1),
            events.cell(i, 2),
            events.cell(i, 3),
            events.cell(i, 4),
        ) else {
            return false;
        };
        if !replay::shapes_request(kind) {
            continue;
        }
        let Ok(data) = RawData::parse(data) else {
            return false;
        };
        parsed.push(Event {
            kind,
            ts,
            actor,
            data,
        });
    }
    let Ok(s) = replay::fold(parsed) else {
        return false;
    };
    let str_at = |f: &Raw<'_>, cell: Cell<'_>| match cell {
        Cell::Null => f.is_null(),
        Cell::Text(t) => f.is_str(t),
        _ => false,
    };
    let json_at = |f: &Raw<'_>, cell: Cell<'_>| matches!(cell, Cell::Text(t) if f.is_json(t));
    let col = |i: usize| row.cell(0, i);
    // `request.created`'s fields, in `replay::CREATED` order.
    const CREATED_COLUMNS: [usize; 13] = [1, 2, 3, 4, 5, 6, 7, 10, 8, 9, 19, 22, 20];
    const DETAILS: usize = 4;
    let created = s
        .created
        .iter()
        .zip(CREATED_COLUMNS)
        .enumerate()
        .all(|(i, (f, c))| {
            if i == DETAILS {
                json_at(f, col(c))
            } else {
                str_at(f, col(c))
            }
        });
    let [rule, version, quorum, approvers, on_expiry] = &s.evaluated;
    let evaluated = str_at(rule, col(12))
        && str_at(version, col(13))
        && matches!(col(14), Cell::Int(n) if quorum.is_json(&n.to_string()))
        && json_at(approvers, col(15))
        && str_at(on_expiry, col(16));
    let outcome = str_at(&s.created_at, col(21))
        && str_at(&s.status, col(11))
        && str_at(&s.decided_at, col(23))
        && str_at(&s.decided_by, col(24))
        && str_at(&s.reason, col(25));
    let decided = s.decisions.len() == decisions.len()
        && s.decisions.iter().enumerate().all(|(i, d)| {
            str_at(&d.principal, decisions.cell(i, 1))
                && str_at(&d.verdict, decisions.cell(i, 2))
                && str_at(&d.comment, decisions.cell(i, 3))
                && str_at(&d.channel, decisions.cell(i, 4))
                && str_at(&d.at, decisions.cell(i, 5))
        });
    created && evaluated && outcome && decided
}

/// The exact comparison of one request, as every load makes it: the row,
/// decisions and events read again by id (same transaction), parsed, and
/// each differing field named.
fn request_differences(tx: &rusqlite::Transaction<'_>, id: &str) -> rusqlite::Result<Vec<String>> {
    use super::requests::{self, DecisionView};
    use rusqlite::OptionalExtension;
    let row = tx
        .prepare_cached(&format!("{} WHERE id = ?", requests::SELECT))?
        .query_row([id], requests::row_from_rusqlite)
        .optional()?;
    let Some(row) = row else {
        return Ok(vec!["missing".into()]);
    };
    let decisions: Vec<DecisionView> = tx
        .prepare_cached(
            "SELECT principal, verdict, comment, channel, created_at FROM decisions \
             WHERE request_id = ? ORDER BY id",
        )?
        .query_map([id], |r| {
            Ok(DecisionView {
                principal: r.get(0)?,
                verdict: r.get(1)?,
                comment: r.get(2)?,
                channel: r.get(3)?,
                at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let events = owned_events(tx, id)?;
    Ok(requests::state_differences(
        &row,
        &decisions,
        &event_refs(&events),
    ))
}

/// A request's events that shape it, oldest first, with their data parsed.
fn owned_events(tx: &rusqlite::Transaction<'_>, id: &str) -> rusqlite::Result<Vec<OwnedEvent>> {
    let mut stmt = tx.prepare_cached(
        "SELECT kind, ts, actor, data FROM audit_events WHERE request_id = ? ORDER BY seq",
    )?;
    let mut rows = stmt.query([id])?;
    let mut events = Vec::new();
    while let Some(r) = rows.next()? {
        let kind = r.get_ref(0)?.as_str().unwrap_or_default();
        if !crate::domain::replay::shapes_request(kind) {
            continue;
        }
        let data = r.get_ref(3)?.as_str().unwrap_or_default();
        events.push(OwnedEvent {
            kind: kind.to_string(),
            ts: r.get(1)?,
            actor: r.get(2)?,
            data: serde_json::from_str(data).unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(events)
}

fn event_refs(events: &[OwnedEvent]) -> Vec<crate::domain::replay::EventRef<'_>> {
    events
        .iter()
        .map(|e| crate::domain::replay::EventRef {
            kind: &e.kind,
            ts: &e.ts,
            actor: &e.actor,
            data: &e.data,
        })
        .collect()
}

/// [`derived::redemption_differences`](super::derived::redemption_differences)
/// over a request's rows as this reader holds them.
fn redemption_differences(id: &str, rows: &Rowset, events: &Rowset) -> Vec<String> {
    use super::derived::{EventCells, RedemptionRow};
    fn text(set: &Rowset, i: usize, c: usize) -> Option<&str> {
        match set.cell(i, c) {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }
    let rows: Vec<RedemptionRow<'_>> = (0..rows.len())
        .map(|i| RedemptionRow {
            redeemed_by: text(rows, i, 1),
            key_id: text(rows, i, 2),
            redeemed_at: text(rows, i, 3),
        })
        .collect();
    let events: Vec<EventCells<'_>> = (0..events.len())
        .map(|i| EventCells {
            kind: text(events, i, 1).unwrap_or_default(),
            ts: text(events, i, 2),
            actor: text(events, i, 3),
            data: text(events, i, 4),
        })
        .collect();
    super::derived::redemption_differences(id, &rows, &events)
}

/// The distinct values of an indexed column, one index probe each.
fn distinct(tx: &rusqlite::Transaction<'_>, column: &str) -> rusqlite::Result<Vec<String>> {
    use rusqlite::OptionalExtension;
    let mut stmt = tx.prepare(&format!(
        "SELECT {column} FROM audit_events WHERE {column} > ? ORDER BY {column} LIMIT 1"
    ))?;
    let mut values = Vec::new();
    let mut last = String::new();
    while let Some(v) = stmt
        .query_row([&last], |r| r.get::<_, String>(0))
        .optional()?
    {
        values.push(v.clone());
        last = v;
    }
    Ok(values)
}

/// `audit_facets` must hold exactly the distinct actions and kinds of the
/// events: a missing row hides events from glob and prefix queries.
fn facets_against_events(
    tx: &rusqlite::Transaction<'_>,
    out: &mut Vec<Mismatch>,
) -> rusqlite::Result<()> {
    use std::collections::BTreeSet;
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for facet in ["action", "kind"] {
        for v in distinct(tx, facet)? {
            expected.insert((facet.to_string(), v));
        }
    }
    let mut stmt = tx.prepare("SELECT facet, value FROM audit_facets")?;
    let stored: BTreeSet<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    out.extend(super::derived::facet_mismatches(&expected, &stored));
    Ok(())
}

/// Events of the given kinds, oldest first, with their data parsed.
fn events_of(
    tx: &rusqlite::Transaction<'_>,
    kinds: &[&str],
) -> rusqlite::Result<Vec<(String, serde_json::Value)>> {
    let marks = vec!["?"; kinds.len()].join(", ");
    let mut stmt = tx.prepare(&format!(
        "SELECT kind, data FROM audit_events WHERE kind IN ({marks}) ORDER BY seq"
    ))?;
    stmt.query_map(rusqlite::params_from_iter(kinds), |r| {
        let data: String = r.get(1)?;
        Ok((
            r.get(0)?,
            serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        ))
    })?
    .collect()
}

/// Each `api_keys` row against its `key.created` / `key.revoked` events:
/// principal, owner, scopes, name, and whether it is revoked.
fn keys_against_events(
    tx: &rusqlite::Transaction<'_>,
    out: &mut Vec<Mismatch>,
) -> rusqlite::Result<()> {
    let events = events_of(tx, &super::derived::KEY_KINDS)?;
    let mut stmt = tx.prepare(
        "SELECT id, principal, owner, scopes, name, revoked_at FROM api_keys ORDER BY id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(super::derived::StoredKey {
                id: r.get(0)?,
                principal: r.get(1)?,
                owner: r.get(2)?,
                scopes: r.get(3)?,
                name: r.get(4)?,
                revoked: r.get::<_, Option<String>>(5)?.is_some(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    out.extend(super::derived::key_mismatches(&events, rows));
    Ok(())
}

/// Each `identities` row against the `identity.linked` / `identity.unlinked`
/// events: the latest link of each chat account, and nothing else.
fn identities_against_events(
    tx: &rusqlite::Transaction<'_>,
    out: &mut Vec<Mismatch>,
) -> rusqlite::Result<()> {
    let events = events_of(tx, &super::derived::IDENTITY_KINDS)?;
    let mut stmt = tx.prepare("SELECT external, principal FROM identities ORDER BY external")?;
    let stored: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    out.extend(super::derived::identity_mismatches(&events, stored));
    Ok(())
}

/// The first checkpoint (in seq order) the database's trail does not hold
/// exactly, with why; `None` when it holds them all. One indexed lookup each.
pub async fn check_checkpoints_in_db(
    db: &str,
    list: &[Checkpoint],
    key: &VerifyingKey,
) -> AppResult<Option<(Checkpoint, String)>> {
    use rusqlite::OptionalExtension;
    let db = db.to_string();
    let mut list = list.to_vec();
    let key = *key;
    tokio::task::spawn_blocking(move || {
        list.sort_by_key(|c| c.seq);
        let conn = open_read(&db)?;
        let mut stmt = conn
            .prepare("SELECT hash FROM audit_events WHERE seq = ?")
            .map_err(bulk_error)?;
        for c in list {
            let hash: Option<String> = stmt
                .query_row([c.seq], |r| r.get(0))
                .optional()
                .map_err(bulk_error)?;
            if let Err(why) = checkpoints::check(&c, &key, hash.as_deref()) {
                return Ok(Some((c, why)));
            }
        }
        Ok(None)
    })
    .await
    .map_err(|e| anyhow::anyhow!("checkpoint check failed: {e}"))?
}

/// The same check against an export file (NDJSON or CSV), read once more.
pub fn check_checkpoints_in_export(
    path: &std::path::Path,
    list: &[Checkpoint],
    key: &VerifyingKey,
) -> anyhow::Result<Option<(Checkpoint, String)>> {
    use std::collections::BTreeMap;
    use std::io::BufRead;
    let mut wanted: BTreeMap<i64, Option<String>> = list.iter().map(|c| (c.seq, None)).collect();
    let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut lines = f.lines().peekable();
    let csv = lines
        .peek()
        .and_then(|l| l.as_ref().ok())
        .is_some_and(|l| !l.starts_with('{'));
    if csv {
        drop(lines);
        let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        for rec in csv::Reader::from_reader(f).records() {
            let r = rec?;
            if let Ok(seq) = r[0].parse::<i64>()
                && let Some(slot) = wanted.get_mut(&seq)
            {
                *slot = Some(r[8].to_string());
            }
        }
    } else {
        for line in lines {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let e: super::audit::ExportLine<'_> = serde_json::from_str(&line)?;
            if let Some(slot) = wanted.get_mut(&e.seq) {
                *slot = Some(e.hash.to_string());
            }
        }
    }
    let mut list = list.to_vec();
    list.sort_by_key(|c| c.seq);
    for c in list {
        let hash = wanted.get(&c.seq).cloned().flatten();
        if let Err(why) = checkpoints::check(&c, key, hash.as_deref()) {
            return Ok(Some((c, why)));
        }
    }
    Ok(None)
}

/// Writes the rows the trail implies for every request and key that has
/// none (`approval_requests`, `decisions`, `api_keys`): the inverse of the
/// checks above. The benchmark seeds a trail directly and derives the
/// tables with this, so the seeded database is one the service could have
/// written. Keys get an unusable token hash: they exist, nobody holds them.
pub fn materialize_from_trail(db: &str) -> AppResult<u64> {
    use serde_json::Value;
    let mut conn = rusqlite::Connection::open(db_file(db)).map_err(bulk_error)?;
    let tx = conn.transaction().map_err(bulk_error)?;
    let mut written = 0u64;
    {
        let mut ev_stmt = tx
            .prepare(
                "SELECT request_id, kind, ts, actor, data FROM audit_events \
                 WHERE request_id > '' AND request_id NOT IN (SELECT id FROM approval_requests) \
                 ORDER BY request_id, seq",
            )
            .map_err(bulk_error)?;
        let mut evs: Groups<'_, OwnedEvent> =
            Groups::new(ev_stmt.query([]).map_err(bulk_error)?, |r| {
                let kind = r.get_ref(1)?.as_str().unwrap_or_default();
                if !crate::domain::replay::shapes_request(kind) {
                    return Ok(None);
                }
                let data = r.get_ref(4)?.as_str().unwrap_or_default();
                Ok(Some((
                    r.get(0)?,
                    OwnedEvent {
                        kind: kind.to_string(),
                        ts: r.get(2)?,
                        actor: r.get(3)?,
                        data: serde_json::from_str(data).unwrap_or(Value::Null),
                    },
                )))
            });
        let mut insert = tx
            .prepare(
                "INSERT INTO approval_requests (id, action, resource, summary, justification, details, risk, \
                 requester, key_id, key_owner, on_behalf_of, status, policy_rule, policy_version, \
                 required_approvals, approvers, on_expiry, callback_url, payload_sha256, created_at, \
                 expires_at, decided_at, decided_by, final_reason) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .map_err(bulk_error)?;
        let mut insert_decision = tx
            .prepare(
                "INSERT INTO decisions (request_id, principal, verdict, comment, channel, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .map_err(bulk_error)?;
        while let Some(id) = evs.peek().map_err(bulk_error)?.map(str::to_string) {
            let events = evs.take(&id).map_err(bulk_error)?;
            let refs: Vec<crate::domain::replay::EventRef<'_>> = events
                .iter()
                .map(|e| crate::domain::replay::EventRef {
                    kind: &e.kind,
                    ts: &e.ts,
                    actor: &e.actor,
                    data: &e.data,
                })
                .collect();
            let Ok(s) = crate::domain::replay::replay(&refs) else {
                continue;
            };
            let text = |f: &str| s.get(f).and_then(Value::as_str).map(str::to_string);
            let json_text = |f: &str| s.get(f).map(Value::to_string);
            insert
                .execute(rusqlite::params![
                    id,
                    text("action"),
                    text("resource"),
                    text("summary"),
                    text("justification"),
                    json_text("details"),
                    text("risk"),
                    text("requester"),
                    text("key_id"),
                    text("key_owner"),
                    text("on_behalf_of"),
                    text("status"),
                    text("policy_rule"),
                    text("policy_version"),
                    s.get("required_approvals").and_then(Value::as_i64),
                    json_text("approvers"),
                    text("on_expiry"),
                    text("callback_url"),
                    text("payload_sha256"),
                    text("created_at"),
                    text("expires_at"),
                    text("decided_at"),
                    text("decided_by"),
                    text("reason"),
                ])
                .map_err(bulk_error)?;
            for d in s["decisions"].as_array().into_iter().flatten() {
                let t = |f: &str| d[f].as_str().map(str::to_string);
                insert_decision
                    .execute(rusqlite::params![
                        id,
                        t("principal"),
                        t("verdict"),
                        t("comment"),
                        t("channel"),
                        t("at")
                    ])
                    .map_err(bulk_error)?;
            }
            written += 1;
        }
        let mut insert_key = tx
            .prepare(
                "INSERT OR IGNORE INTO api_keys (id, token_hash, prefix, principal, owner, scopes, name, created_at) \
                 VALUES (?1, 'unusable:' || ?1, 'cs_none', ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(bulk_error)?;
        let mut keys = tx
            .prepare("SELECT ts, data FROM audit_events WHERE kind = 'key.created' ORDER BY seq")
            .map_err(bulk_error)?;
        let mut rows = keys.query([]).map_err(bulk_error)?;
        while let Some(r) = rows.next().map_err(bulk_error)? {
            let ts: String = r.get(0).map_err(bulk_error)?;
            let data: String = r.get(1).map_err(bulk_error)?;
            let d: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            let scopes = d["scopes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            insert_key
                .execute(rusqlite::params![
                    d["key_id"].as_str(),
                    d["principal"].as_str(),
                    d["owner"].as_str(),
                    scopes,
                    d["name"].as_str(),
                    ts
                ])
                .map_err(bulk_error)?;
        }
    }
    tx.commit().map_err(bulk_error)?;
    Ok(written)
}
