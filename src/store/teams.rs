//! Teams conversations the bot may post to: references captured when it is
//! added to a team, channel or chat, and the operator's default. What they
//! mean and when each is audited is `channels::teams::conversations`'s.

use serde::Serialize;

use super::{Store, WriteCtx};
use crate::error::AppResult;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Conversation {
    pub conversation_id: String,
    pub service_url: String,
    pub tenant_id: Option<String>,
    pub conversation_type: Option<String>,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
    pub name: Option<String>,
    pub added_by: Option<String>,
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
    pub removed_at: Option<String>,
}

/// A reference from an activity, to capture.
#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    pub conversation_id: String,
    pub service_url: String,
    pub tenant_id: Option<String>,
    pub conversation_type: Option<String>,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
    pub name: Option<String>,
    pub added_by: Option<String>,
}

const SELECT: &str = "SELECT conversation_id, service_url, tenant_id, conversation_type, team_id, team_name, \
    name, added_by, is_default, created_at, updated_at, removed_at FROM teams_conversations";
const PG_SELECT: &str = "SELECT conversation_id, service_url, tenant_id, conversation_type, team_id, team_name, \
    name, added_by, is_default, cs_ts(created_at) AS created_at, cs_ts(updated_at) AS updated_at, \
    cs_ts(removed_at) AS removed_at FROM teams_conversations";

/// Every conversation, the default first.
pub async fn list(store: &Store) -> AppResult<Vec<Conversation>> {
    // NULLs sort first on SQLite and last on PostgreSQL unless told.
    let order =
        "ORDER BY is_default DESC, team_name NULLS FIRST, name NULLS FIRST, conversation_id";
    Ok(on!(store.db(),
        sqlite: sqlx::AssertSqlSafe(format!("{SELECT} {order}")),
        postgres: sqlx::AssertSqlSafe(format!("{PG_SELECT} {order}")),
        |sql, e| sqlx::query_as::<_, Conversation>(sql).fetch_all(e).await?))
}

pub async fn get(store: &Store, id: &str) -> AppResult<Option<Conversation>> {
    Ok(on!(store.db(),
        sqlite: sqlx::AssertSqlSafe(format!("{SELECT} WHERE conversation_id = ?")),
        postgres: sqlx::AssertSqlSafe(format!("{PG_SELECT} WHERE conversation_id = $1")),
        |sql, e| sqlx::query_as::<_, Conversation>(sql).bind(id).fetch_optional(e).await?))
}

/// The operator's default conversation, if one was chosen.
pub async fn default(store: &Store) -> AppResult<Option<Conversation>> {
    Ok(on!(store.db(),
        sqlite: sqlx::AssertSqlSafe(format!("{SELECT} WHERE is_default = 1")),
        postgres: sqlx::AssertSqlSafe(format!("{PG_SELECT} WHERE is_default")),
        |sql, e| sqlx::query_as::<_, Conversation>(sql).fetch_optional(e).await?))
}

/// The service URL Teams used most recently in a conversation the bot is
/// still in.
pub async fn latest_service_url(store: &Store) -> AppResult<Option<String>> {
    Ok(on!(store.db(),
        sqlite: "SELECT service_url FROM teams_conversations WHERE removed_at IS NULL ORDER BY updated_at DESC LIMIT 1",
        postgres: "SELECT service_url FROM teams_conversations WHERE removed_at IS NULL ORDER BY updated_at DESC LIMIT 1",
        |sql, e| sqlx::query_scalar(sql).fetch_optional(e).await?))
}

/// Records (or refreshes) a captured conversation; what the activity left
/// out keeps its earlier value, and a removed conversation is back.
pub async fn capture(ctx: &mut WriteCtx, c: &Captured) -> AppResult<()> {
    let now = ctx.now_str();
    ctx.exec(stmt!(
        sqlite: "INSERT INTO teams_conversations (conversation_id, service_url, tenant_id, conversation_type, team_id, \
            team_name, name, added_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
            ON CONFLICT (conversation_id) DO UPDATE SET service_url = excluded.service_url, \
            tenant_id = excluded.tenant_id, conversation_type = excluded.conversation_type, \
            team_id = COALESCE(excluded.team_id, team_id), team_name = COALESCE(excluded.team_name, team_name), \
            name = COALESCE(excluded.name, name), added_by = COALESCE(excluded.added_by, added_by), \
            updated_at = excluded.updated_at, removed_at = NULL",
        postgres: "INSERT INTO teams_conversations AS t (conversation_id, service_url, tenant_id, conversation_type, \
            team_id, team_name, name, added_by, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::timestamptz, $10::timestamptz) \
            ON CONFLICT (conversation_id) DO UPDATE SET service_url = excluded.service_url, \
            tenant_id = excluded.tenant_id, conversation_type = excluded.conversation_type, \
            team_id = COALESCE(excluded.team_id, t.team_id), team_name = COALESCE(excluded.team_name, t.team_name), \
            name = COALESCE(excluded.name, t.name), added_by = COALESCE(excluded.added_by, t.added_by), \
            updated_at = excluded.updated_at, removed_at = NULL",
        [&c.conversation_id, &c.service_url, &c.tenant_id, &c.conversation_type, &c.team_id, &c.team_name, &c.name, &c.added_by, &now, &now],
    ))
        .await?;
    Ok(())
}

/// Marks a conversation the bot was removed from; false if it was not in it.
pub async fn remove(ctx: &mut WriteCtx, conversation_id: &str) -> AppResult<bool> {
    let now = ctx.now_str();
    let n = ctx.exec(stmt!(
        sqlite: "UPDATE teams_conversations SET removed_at = ?, updated_at = ? WHERE conversation_id = ? AND removed_at IS NULL",
        postgres: "UPDATE teams_conversations SET removed_at = $1::timestamptz, updated_at = $2::timestamptz \
            WHERE conversation_id = $3 AND removed_at IS NULL",
        [&now, &now, conversation_id],
    ))
        .await?;
    Ok(n > 0)
}

/// Registers a conversation that was never captured (or changes its
/// service URL), as the operator gave it.
pub async fn register(
    ctx: &mut WriteCtx,
    conversation_id: &str,
    service_url: &str,
) -> AppResult<()> {
    let now = ctx.now_str();
    ctx.exec(stmt!(
        sqlite: "INSERT INTO teams_conversations (conversation_id, service_url, created_at, updated_at) \
            VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET \
            service_url = excluded.service_url, updated_at = excluded.updated_at",
        postgres: "INSERT INTO teams_conversations (conversation_id, service_url, created_at, updated_at) \
            VALUES ($1, $2, $3::timestamptz, $4::timestamptz) ON CONFLICT (conversation_id) DO UPDATE SET \
            service_url = excluded.service_url, updated_at = excluded.updated_at",
        [conversation_id, service_url, &now, &now],
    ))
        .await?;
    Ok(())
}

/// Makes `conversation_id` the one default; false (and nothing changed) if
/// no such conversation is known.
pub async fn set_default(ctx: &mut WriteCtx, conversation_id: &str) -> AppResult<bool> {
    let known: Option<i64> = ctx
        .scalar(stmt!(
            sqlite: "SELECT 1 FROM teams_conversations WHERE conversation_id = ?",
            postgres: "SELECT 1::bigint FROM teams_conversations WHERE conversation_id = $1",
            [conversation_id],
        ))
        .await?;
    if known.is_none() {
        return Ok(false);
    }
    let now = ctx.now_str();
    ctx.exec(stmt!(
        sqlite: "UPDATE teams_conversations SET is_default = 0 WHERE is_default = 1",
        postgres: "UPDATE teams_conversations SET is_default = false WHERE is_default",
    ))
    .await?;
    ctx.exec(stmt!(
        sqlite: "UPDATE teams_conversations SET is_default = 1, updated_at = ? WHERE conversation_id = ?",
        postgres: "UPDATE teams_conversations SET is_default = true, updated_at = $1::timestamptz WHERE conversation_id = $2",
        [&now, conversation_id],
    ))
        .await?;
    Ok(true)
}
