//! Permits: what an approved request earns, so the system that acts can
//! refuse to act without one.
//!
//! A permit is a compact JWS (`alg: EdDSA`, Ed25519, with a `kid`) whose
//! claims bind the request id (`jti`), the requester (`sub`), the action,
//! the resource, the payload hash and the approvers. It is signed with a
//! key of its own, not the audit key: a target only ever needs the permit
//! key's public half (`/.well-known/jwks.json`), and either key can be
//! rotated or guarded without the other.
//!
//! This module holds the key, the claims and the checks, with no I/O
//! besides the key file, so the service, `countersign permit verify` and
//! `countersign exec` check a permit with the very same code.
//! `service` issues permits (in the same write job that approves) and
//! redeems them.

pub mod service;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The policy rule that let the request through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyClaim {
    pub rule: String,
    pub version: String,
}

/// A permit's claims, in the order they are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The approval request's id.
    pub jti: String,
    pub iss: String,
    /// The requester: the principal of the key that asked.
    pub sub: String,
    pub action: String,
    pub resource: String,
    pub payload_sha256: String,
    /// The people whose approvals count (empty when policy allowed it).
    pub approvers: Vec<String>,
    pub policy: PolicyClaim,
    pub iat: i64,
    pub exp: i64,
}

/// The service's permit signing key.
pub struct PermitKey {
    encoding: EncodingKey,
    public: [u8; 32],
    kid: String,
}

impl PermitKey {
    /// Loads the PKCS#8 PEM at `path`, or creates it (mode 0600) at first start.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        let key = crate::keyfile::load_or_create(path, "permit signing key")?;
        Self::from_signing_key(&key)
    }

    fn from_signing_key(key: &SigningKey) -> anyhow::Result<Self> {
        let der = key.to_pkcs8_der().map_err(|e| anyhow::anyhow!("{e}"))?;
        let public = key.verifying_key().to_bytes();
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public,
            kid: kid_of(&public),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn verifying(&self) -> TrustedKey {
        TrustedKey {
            kid: self.kid.clone(),
            public: self.public,
        }
    }

    /// Signs `claims`. Ed25519 is deterministic and the encoding of header
    /// and claims is fixed, so the same claims always give the same token.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| anyhow::anyhow!("cannot sign a permit: {e}"))
    }

    /// The public key as SPKI PEM, for `permit verify --public-key`.
    pub fn public_pem(&self) -> String {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        VerifyingKey::from_bytes(&self.public)
            .ok()
            .and_then(|k| k.to_public_key_pem(LineEnding::LF).ok())
            .unwrap_or_default()
    }

    /// The public key as a JWKS, for any JOSE library.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(self.public),
            "kid": self.kid, "alg": "EdDSA", "use": "sig",
        }]})
    }
}

/// A key id: the first 16 hex digits of the SHA-256 of the public key.
pub fn kid_of(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

/// Issues permits: the key, the issuer URL and the lifetime.
pub struct Issuer {
    pub key: PermitKey,
    pub iss: String,
    pub ttl: Duration,
}

/// A public key a permit may be signed with.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub kid: String,
    pub public: [u8; 32],
}

impl TrustedKey {
    /// Reads a public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let key = VerifyingKey::from_public_key_pem(text.trim())
            .map_err(|e| format!("not an Ed25519 public key PEM: {e}"))?;
        let public = key.to_bytes();
        Ok(Self {
            kid: kid_of(&public),
            public,
        })
    }
}

/// The Ed25519 keys of a JWKS document; other key types are skipped.
/// Each `x` must decode to exactly 32 bytes (shorter ones are refused here
/// rather than handed to the JOSE library).
pub fn parse_jwks(doc: &Value) -> Result<Vec<TrustedKey>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no \"keys\" array")?;
    let mut out = vec![];
    for k in keys {
        let s = |f: &str| k.get(f).and_then(Value::as_str);
        if s("kty") != Some("OKP") || s("crv") != Some("Ed25519") {
            continue;
        }
        let (Some(kid), Some(x)) = (s("kid"), s("x")) else {
            return Err("a JWKS key has no kid or x".into());
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|_| format!("JWKS key {kid}: x is not base64url"))?;
        let public: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("JWKS key {kid}: x is not 32 bytes"))?;
        out.push(TrustedKey {
            kid: kid.to_string(),
            public,
        });
    }
    if out.is_empty() {
        return Err("the JWKS holds no Ed25519 key".into());
    }
    Ok(out)
}

/// What the verifier expects the permit to say; `None` is not checked.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub jti: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub payload_sha256: Option<String>,
}

/// Why a permit was refused; the message names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("key: {0}")]
    UnknownKey(String),
    #[error("signature: the permit's signature does not verify with key {0}")]
    Signature(String),
    #[error("expiry: the permit expired at {0}")]
    Expired(String),
    #[error("{claim}: the permit says '{found}', expected '{expected}'")]
    Differs {
        claim: &'static str,
        found: String,
        expected: String,
    },
}

/// Checks a permit: well formed, EdDSA, signed by one of `keys` (matched by
/// `kid`), not expired at `now` (Unix seconds, no leeway: a permit lives
/// minutes, and a target that acts late should ask again), and saying what
/// `expect` says.
pub fn verify(
    token: &str,
    keys: &[TrustedKey],
    expect: &Expect,
    now: i64,
) -> Result<Claims, Refused> {
    let token = token.trim();
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| Refused::Malformed(format!("not a compact JWS: {e}")))?;
    if header.alg != Algorithm::EdDSA {
        return Err(Refused::Malformed(format!(
            "alg is {:?}, not EdDSA",
            header.alg
        )));
    }
    let kid = header
        .kid
        .ok_or_else(|| Refused::Malformed("the header has no kid".into()))?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| Refused::UnknownKey(format!("kid {kid} is not one of the trusted keys")))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    // Expiry is checked below, to name it precisely and without leeway.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_ed_der(&key.public), &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    Refused::Signature(kid.clone())
                }
                _ => Refused::Malformed(format!("{e}")),
            })?;
    let c = data.claims;
    if now >= c.exp {
        let at = chrono::DateTime::from_timestamp(c.exp, 0)
            .map(crate::clock::fmt)
            .unwrap_or_else(|| c.exp.to_string());
        return Err(Refused::Expired(at));
    }
    let pairs: [(&'static str, &str, &Option<String>); 4] = [
        ("jti", &c.jti, &expect.jti),
        ("action", &c.action, &expect.action),
        ("resource", &c.resource, &expect.resource),
        ("payload_sha256", &c.payload_sha256, &expect.payload_sha256),
    ];
    for (claim, found, expected) in pairs {
        if let Some(e) = expected
            && !bool::from(found.as_bytes().ct_eq(e.as_bytes()))
        {
            return Err(Refused::Differs {
                claim,
                found: found.to_string(),
                expected: e.clone(),
            });
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PermitKey {
        PermitKey::from_signing_key(&SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            jti: "0190".into(),
            iss: "http://127.0.0.1:8080".into(),
            sub: "agent:bot".into(),
            action: "deploy".into(),
            resource: "prod/web".into(),
            payload_sha256: "ab".repeat(32),
            approvers: vec!["user:bob@example.com".into()],
            policy: PolicyClaim {
                rule: "deploys".into(),
                version: "v1".into(),
            },
            iat: 1_000,
            exp: 1_600,
        }
    }

    #[test]
    fn the_same_claims_always_sign_to_the_same_token() {
        let k = key();
        assert_eq!(k.sign(&claims()).unwrap(), k.sign(&claims()).unwrap());
    }

    #[test]
    fn a_permit_verifies_with_its_jwks_until_it_expires() {
        let k = key();
        let token = k.sign(&claims()).unwrap();
        let keys = parse_jwks(&k.jwks()).unwrap();
        assert_eq!(
            verify(&token, &keys, &Expect::default(), 1_599).unwrap(),
            claims()
        );
        assert!(matches!(
            verify(&token, &keys, &Expect::default(), 1_600),
            Err(Refused::Expired(_))
        ));
    }

    #[test]
    fn a_claim_other_than_expected_is_named() {
        let k = key();
        let token = k.sign(&claims()).unwrap();
        let expect = Expect {
            resource: Some("prod/db".into()),
            ..Default::default()
        };
        let err = verify(&token, &[k.verifying()], &expect, 1_100).unwrap_err();
        assert!(err.to_string().starts_with("resource:"), "{err}");
    }

    #[test]
    fn a_jwks_key_of_the_wrong_length_is_refused_not_trusted() {
        let doc = json!({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA"}]});
        assert!(parse_jwks(&doc).is_err());
    }
}
