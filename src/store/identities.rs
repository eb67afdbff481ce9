//! Chat accounts linked to principals by an operator
//! (`countersign identities link slack:T1/U1 user:alice@example.com`).
//! A link beats an e-mail lookup: it is the operator's explicit word.

use crate::domain::Principal;
use crate::error::AppResult;

/// The principal linked to `external` (`slack:TEAM/USER`, `teams:AAD_ID`).
pub async fn linked(pool: &sqlx::SqlitePool, external: &str) -> AppResult<Option<Principal>> {
    let p: Option<String> =
        sqlx::query_scalar("SELECT principal FROM identities WHERE external = ?")
            .bind(external)
            .fetch_optional(pool)
            .await?;
    Ok(p.and_then(|p| Principal::parse(&p).ok()))
}
