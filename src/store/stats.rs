//! How many rows a table holds: for operators' diagnostics and for tests
//! that check that a refused input changed nothing.

use std::str::FromStr;

use super::Store;
use crate::error::AppResult;

/// The tables whose size may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    ApprovalRequests,
    Decisions,
    AuditEvents,
    AuditSignatures,
    Outbox,
    ChatMessages,
    ApiKeys,
    Identities,
    SlackUsers,
    TeamsConversations,
    PermitRedemptions,
}

impl Table {
    /// Every table, with its name in the schema.
    const ALL: [(Table, &'static str); 11] = [
        (Table::ApprovalRequests, "approval_requests"),
        (Table::Decisions, "decisions"),
        (Table::AuditEvents, "audit_events"),
        (Table::AuditSignatures, "audit_signatures"),
        (Table::Outbox, "outbox"),
        (Table::ChatMessages, "chat_messages"),
        (Table::ApiKeys, "api_keys"),
        (Table::Identities, "identities"),
        (Table::SlackUsers, "slack_users"),
        (Table::TeamsConversations, "teams_conversations"),
        (Table::PermitRedemptions, "permit_redemptions"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .expect("every table is listed")
    }
}

impl FromStr for Table {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(t, _)| *t)
            .ok_or_else(|| format!("no table is called {s}"))
    }
}

/// The number of rows in `table`.
pub async fn count(store: &Store, table: Table) -> AppResult<i64> {
    // The name comes from the fixed list above, never from input.
    let sql = format!("SELECT COUNT(*) FROM {}", table.name());
    Ok(on!(store.db(),
        sqlite: sqlx::AssertSqlSafe(sql),
        postgres: sqlx::AssertSqlSafe(sql),
        |sql, e| sqlx::query_scalar(sql).fetch_one(e).await?))
}
