//! Where the bot may post: conversation references captured when it is
//! added to a team, channel or chat (`conversationUpdate` /
//! `installationUpdate`), and the operator's choice of default
//! (`countersign teams conversations …`).
//!
//! A card goes to the policy rule's `teams_conversation`, else the default
//! chosen with the CLI, else `COUNTERSIGN_TEAMS_CONVERSATION`. The service
//! URL comes from the captured reference, else `COUNTERSIGN_TEAMS_SERVICE_URL`,
//! else the most recently captured one.

use std::io::Write;

use clap::Subcommand;
use serde::Serialize;
use serde_json::json;
use sqlx::SqlitePool;

use crate::config::TeamsSettings;
use crate::error::{AppError, AppResult};
use crate::store::{Store, WriteCtx};

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

const SELECT: &str = "SELECT conversation_id, service_url, tenant_id, conversation_type, team_id, team_name, \
    name, added_by, is_default, created_at, updated_at, removed_at FROM teams_conversations";

pub async fn list(pool: &SqlitePool) -> AppResult<Vec<Conversation>> {
    Ok(
        sqlx::query_as::<_, Conversation>(sqlx::AssertSqlSafe(format!(
            "{SELECT} ORDER BY is_default DESC, team_name, name, conversation_id"
        )))
        .fetch_all(pool)
        .await?,
    )
}

pub async fn get(pool: &SqlitePool, id: &str) -> AppResult<Option<Conversation>> {
    Ok(
        sqlx::query_as::<_, Conversation>(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE conversation_id = ?"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await?,
    )
}

async fn default(pool: &SqlitePool) -> AppResult<Option<Conversation>> {
    Ok(
        sqlx::query_as::<_, Conversation>(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE is_default = 1"
        )))
        .fetch_optional(pool)
        .await?,
    )
}

/// Where a request's card goes: (conversation id, service URL).
pub async fn destination(
    pool: &SqlitePool,
    settings: &TeamsSettings,
    rule_override: Option<&str>,
) -> AppResult<Result<(String, String), String>> {
    let conversation = match rule_override {
        Some(c) => Some(c.to_string()),
        None => match default(pool).await? {
            Some(d) => Some(d.conversation_id),
            None => settings.conversation.clone(),
        },
    };
    let Some(conversation) = conversation else {
        return Ok(Err("no Teams conversation to post to: set COUNTERSIGN_TEAMS_CONVERSATION, a rule's teams_conversation, or `countersign teams conversations set-default`".into()));
    };
    // An uncaptured conversation (another channel of a team the bot is in)
    // is reached through the configured service URL, else the one Teams
    // used most recently: a tenant's conversations share one.
    let service_url = match get(pool, &conversation).await? {
        Some(c) => Some(c.service_url),
        None => match settings.service_url.clone() {
            Some(s) => Some(s),
            None => sqlx::query_scalar(
                "SELECT service_url FROM teams_conversations WHERE removed_at IS NULL ORDER BY updated_at DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?,
        },
    };
    Ok(match service_url {
        Some(s) => Ok((conversation, s)),
        None => Err(format!(
            "no service URL is known for Teams conversation {conversation}: add the bot to it, or set COUNTERSIGN_TEAMS_SERVICE_URL"
        )),
    })
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

/// Records (or refreshes) a conversation the bot was added to, audited.
pub async fn capture(ctx: &mut WriteCtx, c: &Captured) -> AppResult<()> {
    let now = ctx.now_str();
    sqlx::query(
        "INSERT INTO teams_conversations (conversation_id, service_url, tenant_id, conversation_type, team_id, \
         team_name, name, added_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (conversation_id) DO UPDATE SET service_url = excluded.service_url, \
         tenant_id = excluded.tenant_id, conversation_type = excluded.conversation_type, \
         team_id = COALESCE(excluded.team_id, team_id), team_name = COALESCE(excluded.team_name, team_name), \
         name = COALESCE(excluded.name, name), added_by = COALESCE(excluded.added_by, added_by), \
         updated_at = excluded.updated_at, removed_at = NULL",
    )
    .bind(&c.conversation_id)
    .bind(&c.service_url)
    .bind(&c.tenant_id)
    .bind(&c.conversation_type)
    .bind(&c.team_id)
    .bind(&c.team_name)
    .bind(&c.name)
    .bind(&c.added_by)
    .bind(&now)
    .bind(&now)
    .execute(&mut ctx.conn)
    .await?;
    ctx.audit(
        crate::domain::Principal::system(),
        None,
        "teams.conversation_added",
        &serde_json::to_value(c).unwrap_or_default(),
    )
    .await?;
    Ok(())
}

/// Marks a conversation the bot was removed from, audited.
pub async fn removed(ctx: &mut WriteCtx, conversation_id: &str, by: Option<&str>) -> AppResult<()> {
    let now = ctx.now_str();
    let n = sqlx::query(
        "UPDATE teams_conversations SET removed_at = ?, updated_at = ? WHERE conversation_id = ? AND removed_at IS NULL",
    )
    .bind(&now)
    .bind(&now)
    .bind(conversation_id)
    .execute(&mut ctx.conn)
    .await?
    .rows_affected();
    if n > 0 {
        ctx.audit(
            crate::domain::Principal::system(),
            None,
            "teams.conversation_removed",
            &json!({ "conversation_id": conversation_id, "removed_by": by }),
        )
        .await?;
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// Conversations the bot was added to, and the default one.
    #[command(subcommand)]
    Conversations(ConversationsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConversationsCommand {
    /// List captured conversations (the default first).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a conversation the default destination for approval cards.
    SetDefault {
        /// The conversation id, as listed.
        id: String,
        /// Register a conversation that was not captured, with its service URL.
        #[arg(long)]
        service_url: Option<String>,
    },
}

/// Runs `countersign teams …`; `actor` is the operator, for the audit trail.
pub async fn command(
    store: &Store,
    actor: String,
    cmd: TeamsCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let TeamsCommand::Conversations(cmd) = cmd;
    match cmd {
        ConversationsCommand::List { json } => {
            let rows = list(&store.pool).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<3} {:<48} {:<10} {:<30} SERVICE URL",
                "", "CONVERSATION", "TYPE", "NAME"
            )?;
            for c in rows {
                let mark = if c.is_default { "*" } else { "" };
                let name = match (&c.team_name, &c.name) {
                    (Some(t), Some(n)) => format!("{t} / {n}"),
                    (Some(t), None) => t.clone(),
                    (None, Some(n)) => n.clone(),
                    (None, None) => String::new(),
                };
                let state = if c.removed_at.is_some() {
                    " (bot removed)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{:<3} {:<48} {:<10} {:<30} {}{state}",
                    mark,
                    c.conversation_id,
                    c.conversation_type.as_deref().unwrap_or("-"),
                    name,
                    c.service_url
                )?;
            }
        }
        ConversationsCommand::SetDefault { id, service_url } => {
            if let Some(u) = &service_url {
                url::Url::parse(u)
                    .map_err(|_| anyhow::anyhow!("--service-url '{u}' is not a URL"))?;
            }
            let id2 = id.clone();
            store
                .write(move |ctx| {
                    Box::pin(async move {
                        let now = ctx.now_str();
                        if let Some(u) = &service_url {
                            sqlx::query(
                                "INSERT INTO teams_conversations (conversation_id, service_url, created_at, updated_at) \
                                 VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET \
                                 service_url = excluded.service_url, updated_at = excluded.updated_at",
                            )
                            .bind(&id2).bind(u).bind(&now).bind(&now)
                            .execute(&mut ctx.conn).await?;
                        }
                        let known: Option<i64> = sqlx::query_scalar(
                            "SELECT 1 FROM teams_conversations WHERE conversation_id = ?",
                        )
                        .bind(&id2)
                        .fetch_optional(&mut ctx.conn)
                        .await?;
                        if known.is_none() {
                            return Err(AppError::NotFound(format!(
                                "conversation {id2} was never captured: add the bot to it first (see `countersign teams conversations list`), or pass --service-url"
                            )));
                        }
                        sqlx::query("UPDATE teams_conversations SET is_default = 0 WHERE is_default = 1")
                            .execute(&mut ctx.conn).await?;
                        sqlx::query("UPDATE teams_conversations SET is_default = 1, updated_at = ? WHERE conversation_id = ?")
                            .bind(&now).bind(&id2)
                            .execute(&mut ctx.conn).await?;
                        ctx.audit(&actor, None, "teams.default_conversation_set", &json!({
                            "conversation_id": id2, "service_url": service_url,
                        }))
                        .await?;
                        Ok(())
                    })
                })
                .await?;
            writeln!(out, "default Teams conversation is now {id}")?;
        }
    }
    Ok(())
}
