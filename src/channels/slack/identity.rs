//! Who a Slack user is, as a principal.
//!
//! An operator's explicit link (`countersign identities link
//! slack:TEAM/USER user:…`) wins; it is read from the store on every click
//! so an unlink takes effect at once. Otherwise the user's profile e-mail
//! from `users.info` (Slack returns only confirmed addresses, and only with
//! the `users:read.email` scope) becomes `user:<email>`. Lookups are cached
//! for a while, so a burst of clicks costs one API call, and a profile
//! change is picked up within the TTL. Bots, deleted accounts and profiles
//! without an e-mail stay unmapped: they cannot decide.
//!
//! Each resolution also records principal → Slack user in `slack_users`,
//! so messages can mention approvers instead of printing their address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::SlackApi;
use crate::domain::Principal;
use crate::service::App;
use crate::store::identities;

/// How long a looked-up e-mail is trusted.
const TTL: Duration = Duration::from_secs(10 * 60);
/// How long "this account has no usable e-mail" is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// Why a Slack user has no principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// Nothing links this account to a person.
    Unmapped { external: String },
    /// Slack could not be asked just now.
    Unavailable(String),
}

impl Unresolved {
    /// A sentence for the person who clicked.
    pub fn message(&self) -> String {
        match self {
            Unresolved::Unmapped { external } => format!(
                "Countersign cannot tell who you are, so it cannot take your decision: your Slack profile has no confirmed e-mail address it can read. \
                 Ask an operator to link your account: `countersign identities link {external} user:you@example.com`."
            ),
            Unresolved::Unavailable(why) => format!(
                "Countersign could not look up your Slack profile just now ({why}); nothing was recorded. Please try again in a moment."
            ),
        }
    }
}

pub struct Identities {
    app: App,
    api: SlackApi,
    cache: Mutex<HashMap<String, (Option<Principal>, Instant)>>,
}

impl Identities {
    pub fn new(app: App, api: SlackApi) -> Self {
        Self {
            app,
            api,
            cache: Mutex::default(),
        }
    }

    /// The principal behind a Slack user of a workspace.
    pub async fn resolve(&self, team: &str, user: &str) -> Result<Principal, Unresolved> {
        let external = format!("slack:{team}/{user}");
        let unmapped = || Unresolved::Unmapped {
            external: external.clone(),
        };
        let linked = identities::linked(&self.app.store, &external)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading identity links failed");
                Unresolved::Unavailable("the identity store could not be read".into())
            })?;
        if let Some(p) = linked {
            if self.cached(&external).flatten().as_ref() != Some(&p) {
                self.remember(&external, Some(p.clone()), TTL);
                self.record(&p, team, user).await;
            }
            return Ok(p);
        }
        if let Some(hit) = self.cached(&external) {
            return hit.ok_or_else(unmapped);
        }
        let info = self.api.user_info(user).await.map_err(|e| {
            tracing::warn!(error = %e, "users.info failed");
            Unresolved::Unavailable(e.message().to_string())
        })?;
        let principal = (!info.is_bot && !info.deleted)
            .then_some(info.profile.email)
            .flatten()
            .and_then(|email| Principal::parse(&format!("user:{}", email.trim())).ok());
        match principal {
            Some(p) => {
                self.remember(&external, Some(p.clone()), TTL);
                self.record(&p, team, user).await;
                Ok(p)
            }
            None => {
                self.remember(&external, None, NEGATIVE_TTL);
                Err(unmapped())
            }
        }
    }

    /// A fresh cache entry: `Some(None)` is a remembered "unmapped".
    fn cached(&self, external: &str) -> Option<Option<Principal>> {
        let cache = self.cache.lock().expect("identity cache lock");
        cache
            .get(external)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(p, _)| p.clone())
    }

    fn remember(&self, external: &str, principal: Option<Principal>, ttl: Duration) {
        let mut cache = self.cache.lock().expect("identity cache lock");
        let now = Instant::now();
        if cache.len() > 10_000 {
            cache.retain(|_, (_, until)| *until > now);
        }
        cache.insert(external.to_string(), (principal, now + ttl));
    }

    /// Notes which Slack account a principal uses, for mentions. A display
    /// hint only, so a failure is logged and otherwise ignored.
    async fn record(&self, principal: &Principal, team: &str, user: &str) {
        let (p, t, u) = (
            principal.as_str().to_string(),
            team.to_string(),
            user.to_string(),
        );
        let done = self
            .app
            .store
            .write(move |ctx| {
                Box::pin(async move { identities::record_slack_account(ctx, &p, &t, &u).await })
            })
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "recording a Slack account failed");
        }
    }
}

/// Slack accounts of the given principals, for mentions.
pub async fn slack_names(
    store: &crate::store::Store,
    principals: &[&str],
) -> crate::error::AppResult<super::render::SlackNames> {
    identities::slack_user_ids(store, principals).await
}

/// The user id in a Slack mention: `<@U123|bob>` or `<@U123>`.
pub fn mention_user_id(mention: &str) -> Option<&str> {
    let inner = mention.strip_prefix("<@")?.strip_suffix('>')?;
    let id = inner.split('|').next()?;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_gives_its_user_id() {
        assert_eq!(mention_user_id("<@U123|bob>"), Some("U123"));
        assert_eq!(mention_user_id("<@W9>"), Some("W9"));
        assert_eq!(mention_user_id("@bob"), None);
        assert_eq!(mention_user_id("<@U1 x>"), None);
    }
}
