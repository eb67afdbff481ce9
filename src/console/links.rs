//! One-time sign-in links: what chat's `/audit login` (Teams: `audit
//! login`) hands a person. Single use, valid for `link_ttl` (5 minutes),
//! bound to the principal the chat account resolved to. The token is in
//! the URL only; the database keeps its hash.

use serde_json::json;

use super::session::random_token;
use crate::clock;
use crate::domain::Principal;
use crate::error::AppResult;
use crate::service::App;
use crate::store::console;
use crate::store::keys::token_hash;

/// Issues a link for `who` and returns its URL. Audited as
/// `console.link_issued` (without the token).
pub async fn issue(app: &App, who: &Principal) -> AppResult<String> {
    let token = random_token();
    let hash = token_hash(&token);
    let ttl = chrono::Duration::from_std(app.settings.console.link_ttl).unwrap_or_default();
    let who = who.clone();
    app.store
        .write(move |ctx| {
            Box::pin(async move {
                let expires = ctx.now + ttl;
                console::create_link(ctx, &hash, &who, expires).await?;
                ctx.audit(
                    who.as_str(),
                    None,
                    "console.link_issued",
                    &json!({ "expires_at": clock::fmt(expires) }),
                )
                .await?;
                Ok(())
            })
        })
        .await?;
    Ok(format!("{}/ui/login/{token}", app.console_url()))
}

/// The console URL of a request (the chat messages' "Open in Countersign").
pub fn request_url(app: &App, id: &uuid::Uuid) -> String {
    format!("{}/ui/requests/{id}", app.console_url())
}

/// How long a link is valid, in words, for the chat answer.
pub fn ttl_words(app: &App) -> String {
    let secs = app.settings.console.link_ttl.as_secs();
    if secs.is_multiple_of(60) {
        let m = secs / 60;
        format!("{m} minute{}", if m == 1 { "" } else { "s" })
    } else {
        format!("{secs} seconds")
    }
}
