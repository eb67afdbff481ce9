//! Where each request's chat message lives (one per channel), so a later
//! state change updates that message in place instead of posting anew.

use serde_json::Value;
use uuid::Uuid;

use super::{Store, WriteCtx};
use crate::error::AppResult;

/// A posted message: its conversation (Slack channel, Teams conversation),
/// its id there (Slack `ts`, Teams activity id), and what else the channel
/// needs to update it (Teams: the service URL).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub conversation: String,
    pub message_id: String,
    pub extra: Option<Value>,
}

/// The message of `request_id` on `channel` (`slack`, `teams`), if posted.
pub async fn find(
    store: &Store,
    request_id: Uuid,
    channel: &str,
) -> AppResult<Option<ChatMessage>> {
    let row: Option<(String, String, Option<String>)> = on!(store.db(),
        sqlite: "SELECT conversation, message_id, extra FROM chat_messages WHERE request_id = ? AND channel = ?",
        postgres: "SELECT conversation, message_id, extra FROM chat_messages WHERE request_id = $1::uuid AND channel = $2",
        |sql, e| sqlx::query_as(sql)
            .bind(request_id.to_string())
            .bind(channel)
            .fetch_optional(e)
            .await?);
    Ok(row.map(|(conversation, message_id, extra)| ChatMessage {
        conversation,
        message_id,
        extra: extra.and_then(|e| serde_json::from_str(&e).ok()),
    }))
}

/// Records (or replaces) the message of `request_id` on `channel`.
pub async fn record(
    ctx: &mut WriteCtx,
    request_id: Uuid,
    channel: &str,
    m: &ChatMessage,
) -> AppResult<()> {
    ctx.exec(stmt!(
        sqlite: "INSERT INTO chat_messages (request_id, channel, conversation, message_id, extra) VALUES (?, ?, ?, ?, ?) \
            ON CONFLICT (request_id, channel) DO UPDATE SET conversation = excluded.conversation, \
            message_id = excluded.message_id, extra = excluded.extra",
        postgres: "INSERT INTO chat_messages (request_id, channel, conversation, message_id, extra) \
            VALUES ($1::uuid, $2, $3, $4, $5) \
            ON CONFLICT (request_id, channel) DO UPDATE SET conversation = excluded.conversation, \
            message_id = excluded.message_id, extra = excluded.extra",
        [request_id.to_string(), channel, &m.conversation, &m.message_id, m.extra.as_ref().map(Value::to_string)],
    ))
        .await?;
    Ok(())
}
