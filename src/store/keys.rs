//! API keys: who a caller is and what it may do.
//!
//! A token is `cs_` + 43 characters of base64url randomness (256 bits). Only
//! its SHA-256 is stored; lookup is by that hash, and the final comparison is
//! constant-time. The key, not the request body, says who the requester is.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::domain::Principal;
use crate::error::{AppError, AppResult};
use crate::store::{Store, WriteCtx};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Create requests and cancel one's own.
    Request,
    /// Read any request.
    Read,
    /// Decide on requests: a human using the API instead of chat.
    Decide,
    /// Read and export the audit trail.
    Audit,
    /// Everything.
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "request" => Scope::Request,
            "read" => Scope::Read,
            "decide" => Scope::Decide,
            "audit" => Scope::Audit,
            "admin" => Scope::Admin,
            other => {
                return Err(format!(
                    "scope '{other}' is unknown: use request, read, decide, audit or admin"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Request => "request",
            Scope::Read => "read",
            Scope::Decide => "decide",
            Scope::Audit => "audit",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn parse_scopes(s: &str) -> Result<BTreeSet<Scope>, String> {
    let scopes = s
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(Scope::parse)
        .collect::<Result<BTreeSet<_>, _>>()?;
    if scopes.is_empty() {
        return Err("a key needs at least one scope: request, read, decide, audit or admin".into());
    }
    Ok(scopes)
}

fn scopes_str(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub principal: Principal,
    pub owner: Option<Principal>,
    pub scopes: BTreeSet<Scope>,
}

impl ApiKey {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    pub fn require(&self, scope: Scope) -> AppResult<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "this API key ({}) lacks the '{scope}' scope; it has: {}",
                self.principal,
                scopes_str(&self.scopes)
            )))
        }
    }
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct KeyInfo {
    pub id: String,
    pub prefix: String,
    pub principal: String,
    pub owner: Option<String>,
    pub scopes: String,
    pub name: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub struct NewKey {
    pub principal: Principal,
    pub owner: Option<Principal>,
    pub scopes: BTreeSet<Scope>,
    pub name: Option<String>,
}

/// Creates a key and returns `(id, token)`. The token is not kept.
pub async fn create(store: &Store, actor: &str, new: NewKey) -> AppResult<(Uuid, String)> {
    if new.scopes.contains(&Scope::Decide) && !new.principal.is_human() {
        return Err(AppError::Unprocessable(format!(
            "only user: principals may hold the decide scope; {} is not a person",
            new.principal
        )));
    }
    if let Some(owner) = &new.owner
        && !owner.is_human()
    {
        return Err(AppError::Unprocessable(format!(
            "a key's owner must be a user: principal, not {owner}"
        )));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!(
        "cs_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let id = Uuid::now_v7();
    let hash = token_hash(&token);
    let prefix = token[..10].to_string();
    let actor = actor.to_string();
    store
        .write(move |ctx| {
            Box::pin(async move {
                let now = ctx.now_str();
                ctx.exec(stmt!(
                    sqlite: "INSERT INTO api_keys (id, token_hash, prefix, principal, owner, scopes, name, created_at) \
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    postgres: "INSERT INTO api_keys (id, token_hash, prefix, principal, owner, scopes, name, created_at) \
                        VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8::timestamptz)",
                    [id.to_string(), &hash, &prefix, new.principal.as_str(), new.owner.as_ref().map(|o| o.as_str()), scopes_str(&new.scopes), &new.name, &now],
                ))
        .await?;
                let data = serde_json::json!({
                    "key_id": id, "prefix": prefix, "principal": new.principal,
                    "owner": new.owner, "scopes": new.scopes, "name": new.name,
                });
                ctx.audit(&actor, None, "key.created", &data).await?;
                Ok(())
            })
        })
        .await?;
    Ok((id, token))
}

/// Marks a key revoked inside the caller's write and returns its
/// principal. The caller (`service::approvals::revoke_key`) cancels the
/// key's pending requests in the same write, so no moment exists in which
/// the key is revoked but its requests are still approvable.
pub async fn revoke_in(ctx: &mut WriteCtx, actor: &str, id: &str) -> AppResult<String> {
    let now = ctx.now_str();
    // Not a UUID: no key has it (and PostgreSQL would refuse the cast).
    if Uuid::parse_str(id).is_err() {
        return Err(AppError::NotFound(format!("no API key has id {id}")));
    }
    let row: Option<(String, Option<String>)> = ctx
        .row(stmt!(
            sqlite: "SELECT principal, revoked_at FROM api_keys WHERE id = ?",
            postgres: "SELECT principal, cs_ts(revoked_at) FROM api_keys WHERE id = $1::uuid",
            [id],
        ))
        .await?;
    match row {
        None => Err(AppError::NotFound(format!("no API key has id {id}"))),
        Some((_, Some(at))) => Err(AppError::Conflict(format!(
            "key {id} was already revoked at {at}"
        ))),
        Some((principal, None)) => {
            ctx.exec(stmt!(
                sqlite: "UPDATE api_keys SET revoked_at = ? WHERE id = ?",
                postgres: "UPDATE api_keys SET revoked_at = $1::timestamptz WHERE id = $2::uuid",
                [&now, id],
            ))
            .await?;
            let data = serde_json::json!({ "key_id": id, "principal": principal });
            ctx.audit(actor, None, "key.revoked", &data).await?;
            Ok(principal)
        }
    }
}

/// The pending requests made with a key, oldest first.
pub async fn pending_requests_of(ctx: &mut WriteCtx, key_id: &str) -> AppResult<Vec<Uuid>> {
    let ids: Vec<String> = ctx.scalars(stmt!(
        sqlite: "SELECT id FROM approval_requests WHERE key_id = ? AND status = 'pending' ORDER BY id",
        postgres: "SELECT id::text FROM approval_requests WHERE key_id = $1::uuid AND status = 'pending' ORDER BY id",
        [key_id],
    ))
        .await?;
    ids.iter()
        .map(|id| {
            Uuid::parse_str(id).map_err(|_| {
                AppError::Internal(anyhow::anyhow!("stored request id {id} is not a UUID"))
            })
        })
        .collect()
}

/// Records the owner of the key the decision just inserted by `who` on
/// `request_id` was made with (see migrations/0005).
pub async fn record_decision_key_owner(
    ctx: &mut WriteCtx,
    request_id: Uuid,
    who: &Principal,
    owner: &Principal,
) -> AppResult<()> {
    ctx.exec(stmt!(
        sqlite: "UPDATE decisions SET key_owner = ? WHERE id = \
            (SELECT MAX(id) FROM decisions WHERE request_id = ? AND principal = ?)",
        postgres: "UPDATE decisions SET key_owner = $1 WHERE id = \
            (SELECT MAX(id) FROM decisions WHERE request_id = $2::uuid AND principal = $3)",
        [owner.as_str(), request_id.to_string(), who.as_str()],
    ))
    .await?;
    Ok(())
}

/// For each decision on a request made with an owned key: who decided, and
/// the key's owner.
pub async fn decision_key_owners(
    ctx: &mut WriteCtx,
    request_id: Uuid,
) -> AppResult<Vec<(Principal, Principal)>> {
    let rows: Vec<(String, String)> = ctx.rows(stmt!(
        sqlite: "SELECT principal, key_owner FROM decisions WHERE request_id = ? AND key_owner IS NOT NULL ORDER BY id",
        postgres: "SELECT principal, key_owner FROM decisions WHERE request_id = $1::uuid AND key_owner IS NOT NULL ORDER BY id",
        [request_id.to_string()],
    ))
        .await?;
    rows.into_iter()
        .map(|(p, o)| {
            let bad = |_| {
                AppError::Internal(anyhow::anyhow!(
                    "stored decision on {request_id} has a bad principal"
                ))
            };
            Ok((
                Principal::parse(&p).map_err(bad)?,
                Principal::parse(&o).map_err(bad)?,
            ))
        })
        .collect()
}

pub async fn list(store: &Store) -> AppResult<Vec<KeyInfo>> {
    Ok(on!(store.db(),
        sqlite: "SELECT id, prefix, principal, owner, scopes, name, created_at, revoked_at FROM api_keys ORDER BY created_at",
        postgres: "SELECT id::text, prefix, principal, owner, scopes, name, cs_ts(created_at) AS created_at, \
                   cs_ts(revoked_at) AS revoked_at FROM api_keys ORDER BY created_at, id",
        |sql, e| sqlx::query_as::<_, KeyInfo>(sql).fetch_all(e).await?))
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    token_hash: String,
    principal: String,
    owner: Option<String>,
    scopes: String,
    revoked_at: Option<String>,
}

/// Resolves a bearer token to a key, or says precisely why not.
pub async fn authenticate(store: &Store, token: &str) -> AppResult<ApiKey> {
    if !token.starts_with("cs_") || token.len() != 46 {
        return Err(AppError::Unauthorized(
            "the bearer token is malformed: Countersign tokens start with cs_ and are 46 characters".into(),
        ));
    }
    let hash = token_hash(token);
    let row: Option<KeyRow> = on!(store.db(),
        sqlite: "SELECT id, token_hash, principal, owner, scopes, revoked_at FROM api_keys WHERE token_hash = ?",
        postgres: "SELECT id::text, token_hash, principal, owner, scopes, cs_ts(revoked_at) AS revoked_at \
                   FROM api_keys WHERE token_hash = $1",
        |sql, e| sqlx::query_as(sql).bind(&hash).fetch_optional(e).await?);
    let Some(KeyRow {
        id,
        token_hash: stored,
        principal,
        owner,
        scopes,
        revoked_at,
    }) = row
    else {
        return Err(AppError::Unauthorized("the API key is not known".into()));
    };
    if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
        return Err(AppError::Unauthorized("the API key is not known".into()));
    }
    if let Some(at) = revoked_at {
        return Err(AppError::Unauthorized(format!(
            "the API key was revoked at {at}"
        )));
    }
    let bad = |what: &str| AppError::Internal(anyhow::anyhow!("stored key {id} has a bad {what}"));
    Ok(ApiKey {
        id: Uuid::parse_str(&id).map_err(|_| bad("id"))?,
        principal: Principal::parse(&principal).map_err(|_| bad("principal"))?,
        owner: owner
            .map(|o| Principal::parse(&o))
            .transpose()
            .map_err(|_| bad("owner"))?,
        scopes: parse_scopes(&scopes).map_err(|_| bad("scope list"))?,
    })
}
