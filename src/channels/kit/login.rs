//! "Sign in to the console": `/audit login` in Slack, `audit login` to the
//! Teams bot. The clicker's account is resolved as for any click (an
//! unmapped person gets the same "not linked" answer as elsewhere), then
//! a one-time link bound to that principal is issued
//! ([`crate::console::links`]). The platform shows it only to the asker
//! (Slack: ephemeral; Teams: a reply in the personal chat).

use super::identity::Unresolved;
use crate::domain::Principal;
use crate::service::App;

/// The words that ask for a link.
pub fn is_login(words: &str) -> bool {
    words.trim().eq_ignore_ascii_case("login")
}

/// A sign-in link and how long it is valid, or why there is none.
pub struct Link {
    pub url: String,
    pub valid_for: String,
}

pub async fn link(app: &App, who: Result<Principal, Unresolved>) -> Result<Link, String> {
    let who = who.map_err(|why| why.message())?;
    if !who.is_human() {
        return Err("Only people sign in to the console.".into());
    }
    match crate::console::links::issue(app, &who).await {
        Ok(url) => Ok(Link {
            url,
            valid_for: crate::console::links::ttl_words(app),
        }),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "issuing a console sign-in link failed");
            Err("Countersign could not make a sign-in link just now; please try again.".into())
        }
    }
}
