//! Authenticating what arrives at `/teams/messages`.
//!
//! The Bot Framework signs a JWT for every activity it sends the bot. It is
//! checked here before a byte of the activity is read: RS256 only (so
//! `alg: none` and an HS256 token "signed" with a public key both fail),
//! a key from the JWKS that the OpenID metadata document points to, issuer
//! `https://api.botframework.com`, audience the bot's app id, `exp` and
//! `nbf` with five minutes' leeway, and a key endorsed for `msteams`.
//! Once the body is parsed, [`Verified::check_service_url`] binds the
//! activity to the token: its `serviceUrl` must be the token's `serviceurl`
//! claim, which is what stops a replayed token from steering the bot's
//! replies to another host.
//!
//! Keys are cached. An unknown `kid` refetches them (Microsoft rotates
//! keys), at most once a second so unauthenticated callers cannot make the
//! service hammer the metadata endpoint; a day-old set is refreshed too.
//! `jsonwebtoken`'s `Jwk` drops `endorsements`, so the JWKS is parsed here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use crate::error::AppError;

pub const ISSUER: &str = "https://api.botframework.com";
/// The channel whose endorsement a signing key must carry.
pub const CHANNEL: &str = "msteams";
const LEEWAY_SECS: u64 = 5 * 60;
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const MAX_KEY_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
struct OpenIdMetadata {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

/// One JWKS entry with the Bot Framework's `endorsements` kept.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(default)]
    endorsements: Vec<String>,
}

struct SigningKey {
    key: DecodingKey,
    endorsements: Vec<String>,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<SigningKey>>,
    fetched_at: Option<Instant>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    serviceurl: Option<String>,
}

/// A token that passed every check that does not need the body.
#[derive(Debug)]
pub struct Verified {
    service_url: Option<String>,
}

impl Verified {
    /// The activity's `serviceUrl` must be the one the token was issued for.
    pub fn check_service_url(&self, activity_service_url: Option<&str>) -> Result<(), AppError> {
        let norm = |s: &str| s.trim_end_matches('/').to_string();
        match (&self.service_url, activity_service_url) {
            (Some(claim), Some(url)) if norm(claim) == norm(url) => Ok(()),
            (None, _) => Err(rejected("the token has no serviceurl claim")),
            _ => Err(rejected(
                "the activity's serviceUrl is not the token's serviceurl claim",
            )),
        }
    }
}

fn rejected(why: &str) -> AppError {
    tracing::info!(reason = why, "Teams activity refused: bad token");
    AppError::Unauthorized(format!("Bot Framework token refused: {why}"))
}

/// The bearer token and its header's `kid`: what is read before any key
/// is looked up (the fuzz targets in `fuzz/` call it).
pub fn parse_bearer(authorization: Option<&str>) -> Result<(&str, String), AppError> {
    let token = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| rejected("no Authorization: Bearer header"))?;
    // An unknown or "none" alg does not even parse into a header.
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| rejected("the token header is not an RS256 JWT header"))?;
    if header.alg != Algorithm::RS256 {
        return Err(rejected("only RS256 tokens are accepted"));
    }
    let kid = header
        .kid
        .ok_or_else(|| rejected("the token names no signing key (kid)"))?;
    Ok((token, kid))
}

pub struct Verifier {
    http: reqwest::Client,
    metadata_url: String,
    app_id: String,
    keys: RwLock<KeySet>,
    /// Held while fetching, so concurrent misses fetch once.
    fetching: Mutex<()>,
}

impl Verifier {
    pub fn new(http: reqwest::Client, metadata_url: String, app_id: String) -> Self {
        Self {
            http,
            metadata_url,
            app_id,
            keys: RwLock::new(KeySet::default()),
            fetching: Mutex::new(()),
        }
    }

    /// Checks the `Authorization` header's bearer token.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<Verified, AppError> {
        let (token, kid) = parse_bearer(authorization)?;
        let key = self.key(&kid).await?;
        if !key.endorsements.iter().any(|e| e == CHANNEL) {
            return Err(rejected("the signing key is not endorsed for msteams"));
        }
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_audience(&[&self.app_id]);
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            rejected(match e.kind() {
                K::InvalidSignature => "the signature does not verify",
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet (nbf)",
                K::InvalidAudience => "the token is for another app id",
                K::InvalidIssuer => "the token was not issued by the Bot Framework",
                K::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                _ => "the token does not verify",
            })
        })?;
        Ok(Verified {
            service_url: data.claims.serviceurl,
        })
    }

    async fn key(&self, kid: &str) -> Result<Arc<SigningKey>, AppError> {
        {
            let set = self.keys.read().await;
            let fresh = set.fetched_at.is_some_and(|t| t.elapsed() < MAX_KEY_AGE);
            if let (Some(k), true) = (set.keys.get(kid), fresh) {
                return Ok(k.clone());
            }
        }
        let _guard = self.fetching.lock().await;
        // Someone else may have fetched while this task waited.
        let recently = {
            let set = self.keys.read().await;
            if let Some(k) = set.keys.get(kid)
                && set.fetched_at.is_some_and(|t| t.elapsed() < MAX_KEY_AGE)
            {
                return Ok(k.clone());
            }
            set.fetched_at
                .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL)
        };
        if !recently {
            match self.fetch().await {
                Ok(keys) => {
                    let mut set = self.keys.write().await;
                    set.keys = keys;
                    set.fetched_at = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fetching the Bot Framework signing keys failed");
                    // A stale but known key still verifies; an unknown one cannot.
                    let set = self.keys.read().await;
                    return match set.keys.get(kid) {
                        Some(k) => Ok(k.clone()),
                        None => Err(AppError::Unavailable(
                            "the Bot Framework signing keys cannot be fetched right now".into(),
                        )),
                    };
                }
            }
        }
        let set = self.keys.read().await;
        set.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| rejected("the token's signing key (kid) is not a Bot Framework key"))
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, Arc<SigningKey>>> {
        let meta: OpenIdMetadata = self
            .http
            .get(&self.metadata_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let jwks: RawJwks = self
            .http
            .get(&meta.jwks_uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for k in jwks.keys {
            let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
                continue;
            };
            if k.kty != "RSA" {
                continue;
            }
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(key) => {
                    keys.insert(
                        kid,
                        Arc::new(SigningKey {
                            key,
                            endorsements: k.endorsements,
                        }),
                    );
                }
                Err(err) => {
                    tracing::warn!(%kid, error = %err, "skipping an unreadable signing key")
                }
            }
        }
        tracing::debug!(count = keys.len(), "Bot Framework signing keys fetched");
        Ok(keys)
    }
}
