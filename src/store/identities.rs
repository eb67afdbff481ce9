//! Chat accounts and the principals behind them.
//!
//! - Links set by an operator
//!   (`countersign identities link slack:T1/U1 user:alice@example.com`). A
//!   link beats an e-mail lookup: it is the operator's explicit word.
//! - The Slack account each principal was last seen using, a display hint
//!   for mentions (never used to decide who someone is).

use std::collections::HashMap;

use serde::Serialize;

use super::{Store, WriteCtx};
use crate::domain::Principal;
use crate::error::AppResult;

/// The principal linked to `external` (`slack:TEAM/USER`, `teams:AAD_ID`).
pub async fn linked(store: &Store, external: &str) -> AppResult<Option<Principal>> {
    let p: Option<String> = on!(store.db(),
        sqlite: "SELECT principal FROM identities WHERE external = ?",
        postgres: "SELECT principal FROM identities WHERE external = $1",
        |sql, e| sqlx::query_scalar(sql).bind(external).fetch_optional(e).await?);
    Ok(p.and_then(|p| Principal::parse(&p).ok()))
}

/// One operator link, as `countersign identities list` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Link {
    pub external: String,
    pub principal: String,
    pub created_at: String,
}

/// Every link, by external account.
pub async fn list(store: &Store) -> AppResult<Vec<Link>> {
    Ok(on!(store.db(),
        sqlite: "SELECT external, principal, created_at FROM identities ORDER BY external",
        postgres: "SELECT external, principal, cs_ts(created_at) AS created_at FROM identities ORDER BY external",
        |sql, e| sqlx::query_as(sql).fetch_all(e).await?))
}

/// Links `external` to `principal`, replacing any earlier link of it.
pub async fn link(ctx: &mut WriteCtx, external: &str, principal: &Principal) -> AppResult<()> {
    let now = ctx.now_str();
    ctx.exec(stmt!(
        sqlite: "INSERT INTO identities (external, principal, created_at) VALUES (?, ?, ?) \
            ON CONFLICT (external) DO UPDATE SET principal = excluded.principal, created_at = excluded.created_at",
        postgres: "INSERT INTO identities (external, principal, created_at) VALUES ($1, $2, $3::timestamptz) \
            ON CONFLICT (external) DO UPDATE SET principal = excluded.principal, created_at = excluded.created_at",
        [external, principal.as_str(), &now],
    ))
        .await?;
    Ok(())
}

/// Removes the link of `external`; false if there was none.
pub async fn unlink(ctx: &mut WriteCtx, external: &str) -> AppResult<bool> {
    let n = ctx
        .exec(stmt!(
            sqlite: "DELETE FROM identities WHERE external = ?",
            postgres: "DELETE FROM identities WHERE external = $1",
            [external],
        ))
        .await?;
    Ok(n > 0)
}

/// Notes that `principal` uses Slack user `user` of workspace `team`.
pub async fn record_slack_account(
    ctx: &mut WriteCtx,
    principal: &str,
    team: &str,
    user: &str,
) -> AppResult<()> {
    let now = ctx.now_str();
    ctx.exec(stmt!(
        sqlite: "INSERT INTO slack_users (principal, team_id, user_id, updated_at) VALUES (?, ?, ?, ?) \
            ON CONFLICT (principal) DO UPDATE SET team_id = excluded.team_id, user_id = excluded.user_id, \
            updated_at = excluded.updated_at",
        postgres: "INSERT INTO slack_users (principal, team_id, user_id, updated_at) VALUES ($1, $2, $3, $4::timestamptz) \
            ON CONFLICT (principal) DO UPDATE SET team_id = excluded.team_id, user_id = excluded.user_id, \
            updated_at = excluded.updated_at",
        [principal, team, user, &now],
    ))
        .await?;
    Ok(())
}

/// The Slack user id last seen for each of `principals` that has one.
pub async fn slack_user_ids(
    store: &Store,
    principals: &[&str],
) -> AppResult<HashMap<String, String>> {
    let mut ids = HashMap::new();
    for p in principals {
        if ids.contains_key(*p) {
            continue;
        }
        let user: Option<String> = on!(store.db(),
            sqlite: "SELECT user_id FROM slack_users WHERE principal = ?",
            postgres: "SELECT user_id FROM slack_users WHERE principal = $1",
            |sql, e| sqlx::query_scalar(sql).bind(p).fetch_optional(e).await?);
        if let Some(u) = user {
            ids.insert(p.to_string(), u);
        }
    }
    Ok(ids)
}
