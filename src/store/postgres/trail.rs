//! The whole trail streamed from PostgreSQL, for export (NDJSON / CSV) and
//! for verification of the chain and its head signatures.
//!
//! One `COPY (SELECT …) TO STDOUT (FORMAT binary)` in a REPEATABLE READ,
//! read-only transaction: the server streams rows as fast as it reads them
//! (no cursor round trips), and everything read, the orphan-signature check
//! included, sees one snapshot while replicas keep appending. The bytes are
//! handed in batches to a blocking thread that decodes rows in place
//! ([`super::copy`]) and feeds them to the same code as SQLite uses:
//! [`ExportEncoder`] for the export (so both backends write identical
//! bytes) and [`ChainVerifier`] for the chain (same hash rule, same
//! signature check, same breaks). The server produces rows on one core
//! while this process hashes on the other.

use std::collections::HashMap;

use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgPool, Postgres};
use tokio::sync::mpsc;

use super::copy::{self, BinaryRows, CopyError};
use crate::error::{AppError, AppResult};
use crate::store::audit::{Break, ChainVerifier, Report};
use crate::store::checkpoints::{self, Checkpoint};
use crate::store::trail::{ExportEncoder, ExportFormat};

/// Columns of [`TRAIL_COPY`].
const FIELDS: usize = 11;

/// The trail in seq order with each event's head signature, if any: the
/// same rows, in the same order, as SQLite's export query.
const TRAIL_COPY: &str = "COPY (SELECT e.seq, e.ts, e.actor, e.request_id, e.action, e.kind, e.data, \
     e.prev_hash, e.hash, s.signature, s.hash FROM audit_events e \
     LEFT JOIN audit_signatures s ON s.seq = e.seq ORDER BY e.seq) TO STDOUT (FORMAT binary)";

/// COPY data is forwarded to the decoding thread in batches of about this
/// size (the server sends one message per row).
const BATCH: usize = 256 * 1024;

/// One event row, borrowed from the COPY batch.
struct RowRef<'r> {
    seq: i64,
    cols: [&'r str; 8],
    signature: Option<&'r str>,
    signed_hash: Option<&'r str>,
}

fn row_ref<'r>(f: &[Option<&'r [u8]>; FIELDS]) -> Result<RowRef<'r>, CopyError> {
    Ok(RowRef {
        seq: copy::int8(f[0])?,
        cols: [
            copy::text(f[1])?,
            copy::text(f[2])?,
            copy::text(f[3])?,
            copy::text(f[4])?,
            copy::text(f[5])?,
            copy::text(f[6])?,
            copy::text(f[7])?,
            copy::text(f[8])?,
        ],
        signature: copy::opt_text(f[9])?,
        signed_hash: copy::opt_text(f[10])?,
    })
}

/// Why the decoding thread stopped reading.
enum Stop {
    Break(Break),
    /// The export's receiver went away: not a failure of the export.
    ReaderGone,
    Failed(AppError),
}

impl From<CopyError> for Stop {
    fn from(e: CopyError) -> Self {
        Stop::Failed(internal(e))
    }
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("reading the audit trail: {e}"))
}

/// A connection inside the trail's snapshot transaction. Unless it is
/// committed, the connection is closed when this is dropped, never handed
/// back to the pool inside a transaction or in the middle of a COPY.
struct Snapshot {
    conn: PoolConnection<Postgres>,
    open: bool,
}

impl Snapshot {
    async fn begin(pool: &PgPool) -> AppResult<Self> {
        let mut s = Self {
            conn: pool.acquire().await?,
            open: true,
        };
        s.conn
            .execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        // A full read may take longer than the service's statement timeout.
        s.conn.execute("SET LOCAL statement_timeout = 0").await?;
        Ok(s)
    }

    async fn commit(mut self) -> AppResult<()> {
        self.conn.execute("COMMIT").await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// Streams the trail through `decode`, which runs on a blocking thread and
/// receives the COPY data in batches. Returns its result and whether the
/// stream was read to its end (not when the thread stopped early).
async fn copy_through<T: Send + 'static>(
    snapshot: &mut Snapshot,
    decode: impl FnOnce(mpsc::Receiver<Vec<u8>>) -> T + Send + 'static,
) -> AppResult<(T, bool)> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let worker = tokio::task::spawn_blocking(move || decode(rx));
    let mut complete = true;
    let mut failed: Option<sqlx::Error> = None;
    {
        let mut stream = snapshot.conn.copy_out_raw(TRAIL_COPY).await?;
        let mut batch = Vec::with_capacity(BATCH + 64 * 1024);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => batch.extend_from_slice(&chunk),
                Err(e) => {
                    failed = Some(e);
                    complete = false;
                    break;
                }
            }
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH + 64 * 1024));
                if tx.send(full).await.is_err() {
                    complete = false;
                    break;
                }
            }
        }
        if complete && !batch.is_empty() && tx.send(batch).await.is_err() {
            complete = false;
        }
    }
    drop(tx);
    let out = worker
        .await
        .map_err(|e| anyhow::anyhow!("the trail reader failed: {e}"))?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok((out, complete))
}

/// Streams the whole trail, oldest first, with hashes and head signatures,
/// from one snapshot: byte for byte what `store::trail::export` writes for
/// the same events in SQLite. Stops quietly when the receiver goes away.
pub async fn export(
    pool: &PgPool,
    format: ExportFormat,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> AppResult<()> {
    let mut snapshot = Snapshot::begin(pool).await?;
    let (result, complete) = copy_through(&mut snapshot, move |mut rx| -> AppResult<()> {
        let mut rows = BinaryRows::<FIELDS>::default();
        let mut encoder = ExportEncoder::new(format)?;
        let send = |chunk: Vec<u8>| tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
        while let Some(batch) = rx.blocking_recv() {
            let fed = rows.feed(&batch, |f| -> Result<(), Stop> {
                let r = row_ref(f)?;
                if let Some(chunk) = encoder
                    .event(r.seq, r.cols, r.signature)
                    .map_err(Stop::Failed)?
                    && !send(chunk)
                {
                    return Err(Stop::ReaderGone);
                }
                Ok(())
            });
            match fed {
                Ok(()) => {}
                Err(Stop::ReaderGone) => return Ok(()),
                Err(Stop::Failed(e)) => return Err(e),
                Err(Stop::Break(_)) => unreachable!("export does not verify"),
            }
        }
        rows.finish().map_err(internal)?;
        let rest = encoder.finish()?;
        if !rest.is_empty() {
            send(rest);
        }
        Ok(())
    })
    .await?;
    result?;
    if complete {
        snapshot.commit().await?;
    }
    Ok(())
}

/// Recomputes the stored chain and checks every head signature, reporting
/// exactly what `store::trail::verify` reports for the same trail in
/// SQLite: the first break in seq order, then a signature whose event is
/// missing, then events after the last signed head.
pub async fn verify(pool: &PgPool, key: VerifyingKey) -> AppResult<Result<Report, Break>> {
    let mut snapshot = Snapshot::begin(pool).await?;
    let (checked, complete) = copy_through(
        &mut snapshot,
        move |mut rx| -> AppResult<Result<ChainVerifier, Break>> {
            let mut rows = BinaryRows::<FIELDS>::default();
            let mut v = ChainVerifier::new(key);
            while let Some(batch) = rx.blocking_recv() {
                let fed = rows.feed(&batch, |f| -> Result<(), Stop> {
                    let r = row_ref(f)?;
                    let [ts, actor, request_id, action, kind, data, prev_hash, hash] = r.cols;
                    v.event(
                        r.seq, ts, actor, request_id, action, kind, data, prev_hash, hash,
                    )
                    .and_then(|()| match (r.signature, r.signed_hash) {
                        (Some(sig), Some(signed)) => v.signature(r.seq, signed, sig),
                        _ => Ok(()),
                    })
                    .map_err(Stop::Break)
                });
                match fed {
                    Ok(()) => {}
                    Err(Stop::Break(b)) => return Ok(Err(b)),
                    Err(Stop::Failed(e)) => return Err(e),
                    Err(Stop::ReaderGone) => unreachable!("verify sends nothing"),
                }
            }
            rows.finish().map_err(internal)?;
            Ok(Ok(v))
        },
    )
    .await?;
    let v = match checked? {
        Ok(v) => v,
        Err(b) => return Ok(Err(b)),
    };
    if !complete {
        return Err(internal("the verifier stopped before the end of the trail"));
    }
    let orphan: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(s.seq) FROM audit_signatures s LEFT JOIN audit_events e ON e.seq = s.seq \
         WHERE e.seq IS NULL",
    )
    .fetch_one(&mut *snapshot.conn)
    .await?;
    snapshot.commit().await?;
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

/// The first checkpoint (in seq order) that the trail does not contain
/// exactly, with the reason: the check `store::trail::check_checkpoints_in_db`
/// makes on SQLite, with the hashes at the checkpoints' seqs read in one
/// query from one snapshot.
pub async fn check_checkpoints(
    pool: &PgPool,
    list: &[Checkpoint],
    key: &VerifyingKey,
) -> AppResult<Option<(Checkpoint, String)>> {
    let mut list = list.to_vec();
    list.sort_by_key(|c| c.seq);
    let seqs: Vec<i64> = list.iter().map(|c| c.seq).collect();
    let mut snapshot = Snapshot::begin(pool).await?;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events WHERE seq = ANY($1)")
            .bind(&seqs)
            .fetch_all(&mut *snapshot.conn)
            .await?;
    snapshot.commit().await?;
    let hashes: HashMap<i64, String> = rows.into_iter().collect();
    for c in list {
        if let Err(why) = checkpoints::check(&c, key, hashes.get(&c.seq).map(String::as_str)) {
            return Ok(Some((c, why)));
        }
    }
    Ok(None)
}
