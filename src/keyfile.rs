//! Ed25519 key files: a PKCS#8 PEM loaded from disk, or created there at
//! first start readable by its owner only (0600).
//!
//! The audit chain's key (src/store/audit.rs) and the permit key
//! (src/permits) are kept apart so either can be rotated or guarded alone,
//! but they are read and written the same way, here.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};

/// Loads the key at `path`, or generates one and writes it there. `what`
/// names the key in errors and the log line ("audit signing key").
pub fn load_or_create(path: &Path, what: &str) -> anyhow::Result<SigningKey> {
    if path.exists() {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))?;
        return SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{what} {} is not an Ed25519 PKCS#8 PEM: {e}",
                path.display()
            )
        });
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    write_private(path, pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot create {what} {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new {what}");
    Ok(key)
}

/// Writes a new file only its owner can read. `create_new`: an existing
/// file (another process won the race) is never overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_private_and_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("k.pem");
        let made = load_or_create(&path, "test key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = load_or_create(&path, "test key").unwrap();
        assert_eq!(made.to_bytes(), loaded.to_bytes());
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "not a key").unwrap();
        let e = load_or_create(&path, "test key").unwrap_err().to_string();
        assert!(e.contains("test key") && e.contains("PKCS#8"), "{e}");
    }
}
