//! The web console's rows: one-time sign-in links and sessions. Whether a
//! request needs a step-up (console) decision is not kept here: it is in
//! the request's signed `policy.evaluated` event
//! ([`crate::store::requests::step_up_of`]); migration 0011 dropped the
//! side table 0008 first kept it in.
//!
//! Tokens never reach the database: callers pass their SHA-256
//! ([`crate::store::keys::token_hash`]), so a leaked table signs no one in.
//! A link is consumed by one conditional UPDATE (`used_at IS NULL AND
//! expires_at > now`) and counts only if it changed a row: two clicks on
//! one link, on one replica or on several sharing PostgreSQL, cannot both
//! sign in.

use chrono::{DateTime, Utc};

use super::{Store, WriteCtx};
use crate::clock;
use crate::domain::Principal;
use crate::error::AppResult;

/// Records a one-time link for `principal`, valid until `expires_at`.
pub async fn create_link(
    ctx: &mut WriteCtx,
    token_hash: &str,
    principal: &Principal,
    expires_at: DateTime<Utc>,
) -> AppResult<()> {
    let now = ctx.now_str();
    let expires = clock::fmt(expires_at);
    ctx.exec(stmt!(
        sqlite: "INSERT INTO console_login_links (token_hash, principal, created_at, expires_at) VALUES (?, ?, ?, ?)",
        postgres: "INSERT INTO console_login_links (token_hash, principal, created_at, expires_at) \
            VALUES ($1, $2, $3::timestamptz, $4::timestamptz)",
        [token_hash, principal.as_str(), &now, &expires],
    ))
        .await?;
    Ok(())
}

/// What a link is now, for the confirm page (which consumes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Unknown,
    Used,
    Expired,
    Valid { principal: String },
}

#[derive(sqlx::FromRow)]
struct LinkRow {
    principal: String,
    expires_at: String,
    used_at: Option<String>,
}

pub async fn link_state(
    store: &Store,
    token_hash: &str,
    now: DateTime<Utc>,
) -> AppResult<LinkState> {
    let row: Option<LinkRow> = on!(store.db(),
        sqlite: "SELECT principal, expires_at, used_at FROM console_login_links WHERE token_hash = ?",
        postgres: "SELECT principal, cs_ts(expires_at) AS expires_at, cs_ts(used_at) AS used_at \
                   FROM console_login_links WHERE token_hash = $1",
        |sql, e| sqlx::query_as(sql).bind(token_hash).fetch_optional(e).await?);
    Ok(match row {
        None => LinkState::Unknown,
        Some(r) if r.used_at.is_some() => LinkState::Used,
        Some(r) if clock::parse(&r.expires_at).is_none_or(|t| t <= now) => LinkState::Expired,
        Some(r) => LinkState::Valid {
            principal: r.principal,
        },
    })
}

/// Consumes a link: its principal if this call used it, `None` if it was
/// unknown, already used or expired (at the batch's clock).
pub async fn consume_link(ctx: &mut WriteCtx, token_hash: &str) -> AppResult<Option<Principal>> {
    let now = ctx.now_str();
    let used = ctx.exec(stmt!(
        sqlite: "UPDATE console_login_links SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
        postgres: "UPDATE console_login_links SET used_at = $1::timestamptz \
            WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1::timestamptz",
        [&now, token_hash],
    ))
        .await?;
    if used != 1 {
        return Ok(None);
    }
    let p: Option<String> = ctx
        .scalar(stmt!(
            sqlite: "SELECT principal FROM console_login_links WHERE token_hash = ?",
            postgres: "SELECT principal FROM console_login_links WHERE token_hash = $1",
            [token_hash],
        ))
        .await?;
    Ok(p.and_then(|p| Principal::parse(&p).ok()))
}

/// A console session as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub principal: String,
    /// `link`, `oidc` or `api_key`.
    pub method: String,
    pub auth_time: String,
    pub created_at: String,
    pub last_seen: String,
    pub idle_expires: String,
    pub expires_at: String,
    pub csrf_secret: String,
    /// The signing-in key's scopes (comma-separated) for `api_key`; empty otherwise.
    pub scopes: String,
    pub ended_at: Option<String>,
}

impl Session {
    /// Whether the session still signs its holder in at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        let before = |t: &str| clock::parse(t).is_some_and(|t| now < t);
        self.ended_at.is_none() && before(&self.idle_expires) && before(&self.expires_at)
    }
}

pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub principal: &'a Principal,
    pub method: &'a str,
    pub auth_time: DateTime<Utc>,
    pub idle_expires: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub csrf_secret: &'a str,
    pub scopes: &'a str,
}

pub async fn create_session(ctx: &mut WriteCtx, s: &NewSession<'_>) -> AppResult<()> {
    let now = ctx.now_str();
    let (auth, idle, exp) = (
        clock::fmt(s.auth_time),
        clock::fmt(s.idle_expires),
        clock::fmt(s.expires_at),
    );
    ctx.exec(stmt!(
        sqlite: "INSERT INTO console_sessions (token_hash, principal, method, auth_time, created_at, last_seen, \
            idle_expires, expires_at, csrf_secret, scopes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        postgres: "INSERT INTO console_sessions (token_hash, principal, method, auth_time, created_at, last_seen, \
            idle_expires, expires_at, csrf_secret, scopes) VALUES ($1, $2, $3, $4::timestamptz, $5::timestamptz, \
            $6::timestamptz, $7::timestamptz, $8::timestamptz, $9, $10)",
        [s.token_hash, s.principal.as_str(), s.method, &auth, &now, &now, &idle, &exp, s.csrf_secret, s.scopes],
    ))
        .await?;
    Ok(())
}

pub async fn session(store: &Store, token_hash: &str) -> AppResult<Option<Session>> {
    Ok(on!(store.db(),
        sqlite: "SELECT principal, method, auth_time, created_at, last_seen, idle_expires, expires_at, csrf_secret, \
                 scopes, ended_at FROM console_sessions WHERE token_hash = ?",
        postgres: "SELECT principal, method, cs_ts(auth_time) AS auth_time, cs_ts(created_at) AS created_at, \
                   cs_ts(last_seen) AS last_seen, cs_ts(idle_expires) AS idle_expires, cs_ts(expires_at) AS expires_at, \
                   csrf_secret, scopes, cs_ts(ended_at) AS ended_at FROM console_sessions WHERE token_hash = $1",
        |sql, e| sqlx::query_as(sql).bind(token_hash).fetch_optional(e).await?))
}

/// Slides a live session's idle expiry (never past its absolute one).
pub async fn touch_session(
    ctx: &mut WriteCtx,
    token_hash: &str,
    idle_expires: DateTime<Utc>,
) -> AppResult<()> {
    let now = ctx.now_str();
    let idle = clock::fmt(idle_expires);
    ctx.exec(stmt!(
        sqlite: "UPDATE console_sessions SET last_seen = ?, idle_expires = MIN(?, expires_at) \
            WHERE token_hash = ? AND ended_at IS NULL",
        postgres: "UPDATE console_sessions SET last_seen = $1::timestamptz, idle_expires = LEAST($2::timestamptz, expires_at) \
            WHERE token_hash = $3 AND ended_at IS NULL",
        [&now, &idle, token_hash],
    ))
        .await?;
    Ok(())
}

/// Ends a session (logout); false if it was not live.
pub async fn end_session(ctx: &mut WriteCtx, token_hash: &str) -> AppResult<bool> {
    let now = ctx.now_str();
    let n = ctx.exec(stmt!(
        sqlite: "UPDATE console_sessions SET ended_at = ? WHERE token_hash = ? AND ended_at IS NULL",
        postgres: "UPDATE console_sessions SET ended_at = $1::timestamptz WHERE token_hash = $2 AND ended_at IS NULL",
        [&now, token_hash],
    ))
        .await?;
    Ok(n > 0)
}
