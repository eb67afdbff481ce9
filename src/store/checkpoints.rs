//! Checkpoints: signed chain heads written outside the database.
//!
//! A signed head inside the file proves nothing about what came after it:
//! whoever can write the file can delete the last events and their
//! signature rows back to an earlier head, and the chain still verifies.
//! So after each commit that signed a head, the writer hands the head to a
//! background task that appends one JSON line per head,
//! `{seq, hash, ts, signature, key_id}`, to `COUNTERSIGN_AUDIT_CHECKPOINTS`
//! (meant for another volume or WORM storage) and fsyncs it, coalescing
//! whatever queued meanwhile into one write. The writer never waits for
//! that fsync: the channel is unbounded and sending never blocks.
//!
//! `countersign audit verify --checkpoints FILE` then requires the trail to
//! contain every checkpoint exactly: the event at `seq` has that `hash`, and
//! the signature verifies with the trusted key, whose hex is `key_id`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;

/// One signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// The time of the head event.
    pub ts: String,
    /// Ed25519 over `hash`, hex.
    pub signature: String,
    /// The signing key's public half, hex.
    pub key_id: String,
}

/// Where the writer hands signed heads, and the last head written out.
#[derive(Clone)]
pub struct Checkpoints {
    tx: mpsc::UnboundedSender<Checkpoint>,
    last: Arc<Mutex<Option<Checkpoint>>>,
}

impl Checkpoints {
    /// Opens (creating) the file now, so a bad path fails at start, and
    /// starts the task that appends to it.
    pub fn start(path: &Path) -> anyhow::Result<Self> {
        let file = open_append(path)?;
        let last = Arc::new(Mutex::new(last_line(path)));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(append_task(path.to_path_buf(), file, rx, last.clone()));
        Ok(Self { tx, last })
    }

    /// Hands a signed head to the sink; never blocks.
    pub fn send(&self, c: Checkpoint) {
        let _ = self.tx.send(c);
    }

    /// The newest head written to the sink (and fsynced).
    pub fn last(&self) -> Option<Checkpoint> {
        self.last.lock().expect("checkpoint lock").clone()
    }
}

fn open_append(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open checkpoint file {}: {e}", path.display()))
}

/// The last well-formed line of an existing file, so a restarted service
/// reports the head it wrote before.
fn last_line(path: &Path) -> Option<Checkpoint> {
    let f = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .last()
}

async fn append_task(
    path: PathBuf,
    file: std::fs::File,
    mut rx: mpsc::UnboundedReceiver<Checkpoint>,
    last: Arc<Mutex<Option<Checkpoint>>>,
) {
    let file = Arc::new(file);
    let mut pending: Vec<Checkpoint> = Vec::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(c) => pending.push(c),
                None => break,
            }
        }
        while let Ok(c) = rx.try_recv() {
            pending.push(c);
        }
        let mut buf = Vec::with_capacity(pending.len() * 256);
        for c in &pending {
            serde_json::to_writer(&mut buf, c).expect("a checkpoint serializes");
            buf.push(b'\n');
        }
        let f = file.clone();
        let written = tokio::task::spawn_blocking(move || {
            (&*f).write_all(&buf)?;
            f.sync_data()
        })
        .await;
        match written {
            Ok(Ok(())) => {
                *last.lock().expect("checkpoint lock") = pending.pop();
                pending.clear();
            }
            // Kept and retried: a head not yet outside the box is still owed.
            Ok(Err(e)) => {
                tracing::error!(path = %path.display(), error = %e, "cannot write audit checkpoints; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "checkpoint writer task failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Reads a checkpoint file: one JSON object per line, blank lines ignored.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open checkpoint file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!("{} line {} is not a checkpoint: {e}", path.display(), n + 1)
        })?);
    }
    Ok(out)
}

/// Why a checkpoint is not in the trail, given the hash the trail holds at
/// its seq (`None`: no event there). The signature is checked first: a
/// checkpoint the trusted key did not sign proves nothing either way.
pub fn check(c: &Checkpoint, key: &VerifyingKey, trail_hash: Option<&str>) -> Result<(), String> {
    if c.key_id != hex::encode(key.as_bytes()) {
        return Err(format!(
            "checkpoint at seq {} names key {}, not the trusted key",
            c.seq, c.key_id
        ));
    }
    let sig = hex::decode(&c.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| format!("checkpoint at seq {} has a malformed signature", c.seq))?;
    key.verify(c.hash.as_bytes(), &sig).map_err(|_| {
        format!(
            "checkpoint at seq {} is not signed by the trusted key",
            c.seq
        )
    })?;
    match trail_hash {
        None => Err(format!(
            "checkpoint at seq {} ({}, {}) is not in the trail: events were removed after it was written",
            c.seq, c.hash, c.ts
        )),
        Some(h) if h != c.hash => Err(format!(
            "checkpoint at seq {} ({}) differs from the trail's event there ({h}): the trail was rewritten",
            c.seq, c.hash
        )),
        Some(_) => Ok(()),
    }
}
