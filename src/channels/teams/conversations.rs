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
use serde_json::json;

use crate::config::TeamsSettings;
use crate::error::{AppError, AppResult};
use crate::store::{self, Store, WriteCtx};
pub use store::teams::{Captured, Conversation};

/// Where a request's card goes: (conversation id, service URL).
pub async fn destination(
    store: &Store,
    settings: &TeamsSettings,
    rule_override: Option<&str>,
) -> AppResult<Result<(String, String), String>> {
    let conversation = match rule_override {
        Some(c) => Some(c.to_string()),
        None => match store::teams::default(store).await? {
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
    let service_url = match store::teams::get(store, &conversation).await? {
        Some(c) => Some(c.service_url),
        None => match settings.service_url.clone() {
            Some(s) => Some(s),
            None => store::teams::latest_service_url(store).await?,
        },
    };
    Ok(match service_url {
        Some(s) => Ok((conversation, s)),
        None => Err(format!(
            "no service URL is known for Teams conversation {conversation}: add the bot to it, or set COUNTERSIGN_TEAMS_SERVICE_URL"
        )),
    })
}

/// Records (or refreshes) a conversation the bot was added to, audited.
pub async fn capture(ctx: &mut WriteCtx, c: &Captured) -> AppResult<()> {
    store::teams::capture(ctx, c).await?;
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
    if store::teams::remove(ctx, conversation_id).await? {
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
            let rows = store::teams::list(store).await?;
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
                        if let Some(u) = &service_url {
                            store::teams::register(ctx, &id2, u).await?;
                        }
                        if !store::teams::set_default(ctx, &id2).await? {
                            return Err(AppError::NotFound(format!(
                                "conversation {id2} was never captured: add the bot to it first (see `countersign teams conversations list`), or pass --service-url"
                            )));
                        }
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
