//! `conversationUpdate` / `installationUpdate`: the bot was added to (or
//! removed from) a team, channel or chat; the conversation reference is
//! captured (or marked removed), audited.

use super::super::conversations::{self, Captured};
use super::Activity;
use crate::error::AppResult;
use crate::service::App;

/// The bot was added to or removed from a conversation.
pub async fn membership(app: &App, a: &Activity) -> AppResult<()> {
    let (Some(conv), Some(service_url)) = (a.conversation.clone(), a.service_url.clone()) else {
        return Ok(());
    };
    let added = match (a.kind.as_str(), a.action.as_deref()) {
        ("installationUpdate", Some("add")) => Some(true),
        ("installationUpdate", Some("remove")) => Some(false),
        ("conversationUpdate", _) if a.members_added.iter().any(|m| a.is_bot(m)) => Some(true),
        ("conversationUpdate", _) if a.members_removed.iter().any(|m| a.is_bot(m)) => Some(false),
        _ => None,
    };
    let by = a.from.as_ref().and_then(|f| f.aad_object_id.clone());
    match added {
        Some(true) => {
            let c = Captured {
                conversation_id: conv.id.clone(),
                service_url,
                tenant_id: a.tenant().map(str::to_string),
                conversation_type: conv.conversation_type.clone(),
                team_id: a.channel_data_str(&["team", "id"]),
                team_name: a.channel_data_str(&["team", "name"]),
                name: conv
                    .name
                    .clone()
                    .or_else(|| a.channel_data_str(&["channel", "name"])),
                added_by: by,
            };
            app.store
                .write(move |ctx| Box::pin(async move { conversations::capture(ctx, &c).await }))
                .await
        }
        Some(false) => {
            app.store
                .write(move |ctx| {
                    Box::pin(
                        async move { conversations::removed(ctx, &conv.id, by.as_deref()).await },
                    )
                })
                .await
        }
        None => Ok(()),
    }
}
