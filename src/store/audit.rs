//! The audit chain: how an event is hashed, how the chain head is signed,
//! and how a trail (in the database or in an export) is verified.
//!
//! `hash = SHA-256(prev_hash || "\n" || seq "\n" ts "\n" actor "\n"
//! request_id "\n" action "\n" kind "\n" data)`, hex-encoded, where `data` is
//! the exact JSON text stored (written once in canonical form: keys sorted,
//! no spaces). No field can contain a raw newline, so the encoding is
//! unambiguous. The first event's `prev_hash` is 64 zeros. Each committed
//! batch ends with an Ed25519 signature over its last hash, so rewriting the
//! chain needs the private key as well as write access to the file.

use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

sqlite_row!(StoredEvent {
    seq,
    ts,
    actor,
    request_id,
    action,
    kind,
    data,
    prev_hash,
    hash
});

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored event, as read back from the database or an export.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StoredEvent {
    pub seq: i64,
    pub ts: String,
    pub actor: String,
    pub request_id: String,
    pub action: String,
    pub kind: String,
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

#[allow(clippy::too_many_arguments)]
pub fn event_hash(
    prev_hash: &str,
    seq: i64,
    ts: &str,
    actor: &str,
    request_id: &str,
    action: &str,
    kind: &str,
    data: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(itoa_buf(seq).as_bytes());
    for part in [ts, actor, request_id, action, kind, data] {
        h.update(b"\n");
        h.update(part.as_bytes());
    }
    hex_lower(&h.finalize())
}

fn itoa_buf(n: i64) -> String {
    n.to_string()
}

/// Lower-case hex of a SHA-256. `hex::encode` builds its string one `char`
/// at a time, which showed up at 4% of a whole-trail verify's profile;
/// `encode_to_slice` fills a buffer instead, with the same output.
fn hex_lower(digest: &[u8]) -> String {
    let mut buf = [0u8; 64];
    hex::encode_to_slice(digest, &mut buf).expect("a SHA-256 is 32 bytes");
    String::from_utf8(buf.to_vec()).expect("hex is ASCII")
}

/// The service's Ed25519 key for signing chain heads. Generated at first
/// start (mode 0600); the public half can be handed to auditors.
pub struct Signer {
    key: SigningKey,
    public_hex: String,
}

impl Signer {
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        let key = crate::keyfile::load_or_create(path, "audit signing key")?;
        let public_hex = hex::encode(key.verifying_key().as_bytes());
        Ok(Self { key, public_hex })
    }

    /// The key from `COUNTERSIGN_SIGNING_KEY_PEM` if set, else the file.
    pub fn from_settings(s: &crate::config::Settings) -> anyhow::Result<Self> {
        match &s.signing_key_pem {
            Some(pem) => {
                let key = SigningKey::from_pkcs8_pem(pem.expose()).map_err(|e| {
                    anyhow::anyhow!("COUNTERSIGN_SIGNING_KEY_PEM is not an Ed25519 PKCS#8 PEM: {e}")
                })?;
                let public_hex = hex::encode(key.verifying_key().as_bytes());
                Ok(Self { key, public_hex })
            }
            None => Self::load_or_create(&s.signing_key),
        }
    }

    pub fn sign(&self, hash: &str) -> String {
        hex::encode(self.key.sign(hash.as_bytes()).to_bytes())
    }

    pub fn public_hex(&self) -> &str {
        &self.public_hex
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn public_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 public key encodes")
    }
}

/// Warns (once, at start) when the signing key sits in the database's
/// directory: whoever can write the file could then also re-sign a
/// rewritten trail. README, "Keeping the signing key apart".
pub fn warn_if_key_beside_db(settings: &crate::config::Settings) {
    if settings.signing_key_pem.is_some() {
        return;
    }
    let (db, key) = (&settings.db, settings.signing_key.as_path());
    let dir = |p: &Path| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        std::fs::canonicalize(parent.unwrap_or(Path::new("."))).ok()
    };
    let db_file = super::trail::db_file(db);
    if let (Some(a), Some(b)) = (dir(&db_file), dir(key))
        && a == b
    {
        tracing::warn!(
            key = %key.display(),
            database = %db_file.display(),
            "the audit signing key is in the same directory as the database: anyone who can edit the database can also re-sign it; put the key on another mount (COUNTERSIGN_SIGNING_KEY)"
        );
    }
}

/// Reads a public key given as PEM (from `countersign audit public-key`) or
/// as 64 hex characters.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    if let Ok(k) = VerifyingKey::from_public_key_pem(text) {
        return Ok(k);
    }
    let bytes: [u8; 32] = hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the public key is neither an Ed25519 PEM nor 64 hex characters")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// The first problem found in a trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub events: u64,
    pub signatures: u64,
    pub head_seq: i64,
    pub head_hash: String,
    pub last_signed_seq: i64,
}

/// Checks a trail event by event, in one pass and constant memory.
pub struct ChainVerifier {
    key: VerifyingKey,
    report: Report,
    prev_hash: String,
    pending_signatures: std::collections::BTreeMap<i64, (String, String)>,
}

impl ChainVerifier {
    pub fn new(key: VerifyingKey) -> Self {
        Self {
            key,
            report: Report {
                head_hash: GENESIS.into(),
                ..Default::default()
            },
            prev_hash: GENESIS.into(),
            pending_signatures: Default::default(),
        }
    }

    /// A verifier for a stretch of the chain that starts after `head_seq`,
    /// whose event claims `prev_hash`; the caller checks that claim against
    /// the stretch before it.
    pub fn resume(key: VerifyingKey, head_seq: i64, prev_hash: &str) -> Self {
        let mut v = Self::new(key);
        v.report.head_seq = head_seq;
        v.prev_hash = prev_hash.to_string();
        v
    }

    /// The report of a stretch, without the checks that only the whole
    /// trail can pass (every event signed, no dangling signature).
    pub fn into_stretch(mut self) -> Report {
        self.report.head_hash = std::mem::take(&mut self.prev_hash);
        self.report
    }

    /// Checks the next event: its seq follows the last, it points at the
    /// last hash, and its own hash is what its content says.
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &mut self,
        seq: i64,
        ts: &str,
        actor: &str,
        request_id: &str,
        action: &str,
        kind: &str,
        data: &str,
        prev_hash: &str,
        hash: &str,
    ) -> Result<(), Break> {
        let expected = self.report.head_seq + 1;
        if seq != expected {
            let reason = if seq > expected {
                format!("event {expected} is missing (next present is {seq}): a row was deleted")
            } else {
                format!(
                    "event {seq} appears after event {}: rows were reordered or duplicated",
                    self.report.head_seq
                )
            };
            return Err(Break {
                seq: expected.min(seq),
                reason,
            });
        }
        if prev_hash != self.prev_hash {
            return Err(Break {
                seq,
                reason: "prev_hash does not match the previous event's hash: rows were reordered, removed or edited".into(),
            });
        }
        let computed = event_hash(prev_hash, seq, ts, actor, request_id, action, kind, data);
        if computed != hash {
            return Err(Break {
                seq,
                reason: "hash does not match the event's content: the row was edited".into(),
            });
        }
        self.report.events += 1;
        self.report.head_seq = seq;
        self.prev_hash.clear();
        self.prev_hash.push_str(hash);
        if let Some((sig_hash, sig)) = self.pending_signatures.remove(&seq) {
            self.check_signature(seq, &sig_hash, &sig)?;
        }
        Ok(())
    }

    pub fn stored(&mut self, e: &StoredEvent) -> Result<(), Break> {
        self.event(
            e.seq,
            &e.ts,
            &e.actor,
            &e.request_id,
            &e.action,
            &e.kind,
            &e.data,
            &e.prev_hash,
            &e.hash,
        )
    }

    /// A signature over the chain head at `seq`. It may arrive before its
    /// event (database order) or after it (export order).
    pub fn signature(&mut self, seq: i64, hash: &str, signature: &str) -> Result<(), Break> {
        if seq <= self.report.head_seq {
            if seq == self.report.head_seq && self.prev_hash == hash {
                return self.check_signature(seq, hash, signature);
            }
            return Err(Break {
                seq,
                reason: "a signature does not match the event it signs".into(),
            });
        }
        self.pending_signatures
            .insert(seq, (hash.to_string(), signature.to_string()));
        Ok(())
    }

    fn check_signature(&mut self, seq: i64, hash: &str, signature: &str) -> Result<(), Break> {
        if hash != self.prev_hash {
            return Err(Break {
                seq,
                reason: "the signed head hash differs from the event's hash".into(),
            });
        }
        let sig = hex::decode(signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| Break {
                seq,
                reason: "the head signature is malformed".into(),
            })?;
        self.key.verify(hash.as_bytes(), &sig).map_err(|_| Break {
            seq,
            reason: "the head signature does not verify with this public key".into(),
        })?;
        self.report.signatures += 1;
        self.report.last_signed_seq = seq;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Report, Break> {
        if let Some((&seq, _)) = self.pending_signatures.iter().next() {
            return Err(Break {
                seq,
                reason: format!(
                    "a signature names event {seq}, which is missing: the trail was truncated"
                ),
            });
        }
        if self.report.events > 0 && self.report.last_signed_seq != self.report.head_seq {
            return Err(Break {
                seq: self.report.last_signed_seq + 1,
                reason: "events after the last signed head are not covered by a signature".into(),
            });
        }
        self.report.head_hash = std::mem::take(&mut self.prev_hash);
        Ok(self.report)
    }
}

/// One line of an NDJSON export. `data` is kept as raw JSON text so the
/// verifier hashes exactly the bytes that were stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportLine<'a> {
    pub seq: i64,
    pub ts: &'a str,
    pub actor: &'a str,
    pub request_id: &'a str,
    pub action: &'a str,
    pub kind: &'a str,
    #[serde(borrow)]
    pub data: &'a RawValue,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'a str>,
}

pub const CSV_HEADER: [&str; 10] = [
    "seq",
    "ts",
    "actor",
    "request_id",
    "action",
    "kind",
    "data",
    "prev_hash",
    "hash",
    "signature",
];

/// Verifies an export file (NDJSON or CSV, told apart by the first byte).
pub fn verify_export(
    reader: impl std::io::BufRead,
    key: VerifyingKey,
) -> Result<Result<Report, Break>, String> {
    let mut reader = reader;
    let first = reader
        .fill_buf()
        .map_err(|e| e.to_string())?
        .first()
        .copied();
    let mut v = ChainVerifier::new(key);
    if first == Some(b'{') || first.is_none() {
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            let e: ExportLine<'_> = serde_json::from_str(&line)
                .map_err(|err| format!("line {} is not an export event: {err}", n + 1))?;
            if let Err(b) = v.event(
                e.seq,
                e.ts,
                e.actor,
                e.request_id,
                e.action,
                e.kind,
                e.data.get(),
                e.prev_hash,
                e.hash,
            ) {
                return Ok(Err(b));
            }
            if let Some(sig) = e.signature
                && let Err(b) = v.signature(e.seq, e.hash, sig)
            {
                return Ok(Err(b));
            }
        }
    } else {
        let mut csv = csv::Reader::from_reader(reader);
        let headers = csv.headers().map_err(|e| e.to_string())?.clone();
        if headers.iter().collect::<Vec<_>>() != CSV_HEADER {
            return Err(format!("the CSV header must be {}", CSV_HEADER.join(",")));
        }
        for (n, rec) in csv.records().enumerate() {
            let r = rec.map_err(|e| format!("CSV row {}: {e}", n + 2))?;
            let seq: i64 = r[0]
                .parse()
                .map_err(|_| format!("CSV row {}: seq is not a number", n + 2))?;
            if let Err(b) = v.event(seq, &r[1], &r[2], &r[3], &r[4], &r[5], &r[6], &r[7], &r[8]) {
                return Ok(Err(b));
            }
            if !r[9].is_empty()
                && let Err(b) = v.signature(seq, &r[8], &r[9])
            {
                return Ok(Err(b));
            }
        }
    }
    Ok(v.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<StoredEvent> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let data = format!("{{\"n\":{seq}}}");
                let hash = event_hash(
                    &prev,
                    seq,
                    "2026-01-01T00:00:00.000Z",
                    "user:a@x.io",
                    "",
                    "",
                    "k",
                    &data,
                );
                let e = StoredEvent {
                    seq,
                    ts: "2026-01-01T00:00:00.000Z".into(),
                    actor: "user:a@x.io".into(),
                    request_id: "".into(),
                    action: "".into(),
                    kind: "k".into(),
                    data,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn run(events: &[StoredEvent], key: &SigningKey) -> Result<Report, Break> {
        let mut v = ChainVerifier::new(key.verifying_key());
        for e in events {
            v.stored(e)?;
        }
        let last = events.last().unwrap();
        v.signature(
            last.seq,
            &last.hash,
            &hex::encode(key.sign(last.hash.as_bytes()).to_bytes()),
        )?;
        v.finish()
    }

    #[test]
    fn an_intact_signed_chain_verifies() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let r = run(&chain(5), &key).unwrap();
        assert_eq!((r.events, r.head_seq, r.signatures), (5, 5, 1));
    }

    #[test]
    fn an_edited_deleted_or_swapped_event_is_named() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut edited = chain(5);
        edited[2].data = "{\"n\":99}".into();
        assert_eq!(run(&edited, &key).unwrap_err().seq, 3);

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(run(&deleted, &key).unwrap_err().seq, 2);

        let mut swapped = chain(5);
        swapped.swap(1, 2);
        assert_eq!(run(&swapped, &key).unwrap_err().seq, 2);
    }

    #[test]
    fn a_signature_from_another_key_fails() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let events = chain(2);
        let mut v = ChainVerifier::new(other.verifying_key());
        for e in &events {
            v.stored(e).unwrap();
        }
        let sig = hex::encode(key.sign(events[1].hash.as_bytes()).to_bytes());
        assert!(v.signature(2, &events[1].hash, &sig).is_err());
    }
}
