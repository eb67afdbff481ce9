//! Who a Slack user is, as a principal: the kit's resolver
//! ([`crate::channels::kit::identity`]: operator link `slack:TEAM/USER`,
//! then the cache, then this lookup) over `users.info`, whose profile
//! e-mail (Slack returns only confirmed addresses, and only with the
//! `users:read.email` scope) becomes `user:<email>`. Bots and deleted
//! accounts stay unmapped.
//!
//! Each resolution also records principal → Slack user in `slack_users`,
//! so messages can mention approvers instead of printing their address.

use super::client::{ApiError, SlackApi};
use crate::channels::kit::identity::{self, Resolver, Unresolved};
use crate::domain::Principal;
use crate::service::App;
use crate::store::identities;

/// Why an account with no usable e-mail is unmapped.
const NO_MAIL: &str = "your Slack profile has no confirmed e-mail address it can read";

pub struct Identities {
    app: App,
    api: SlackApi,
    resolver: Resolver,
}

impl Identities {
    pub fn new(app: App, api: SlackApi) -> Self {
        Self {
            resolver: Resolver::new(app.clone()),
            app,
            api,
        }
    }

    /// The principal behind a Slack user of a workspace.
    pub async fn resolve(&self, team: &str, user: &str) -> Result<Principal, Unresolved> {
        let external = format!("slack:{team}/{user}");
        let resolved = self
            .resolver
            .resolve(&external, NO_MAIL, || async {
                let info = self.api.user_info(user).await.map_err(|e| {
                    tracing::warn!(error = %e, "users.info failed");
                    match e {
                        ApiError::Temporary { message, .. } => Unresolved::Unavailable(message),
                        ApiError::Permanent { message } => Unresolved::unmapped(
                            &external,
                            format!("Slack would not look you up: {message}"),
                        ),
                    }
                })?;
                Ok((!info.is_bot && !info.deleted)
                    .then_some(info.profile.email)
                    .flatten()
                    .and_then(|email| identity::from_email(&email)))
            })
            .await?;
        if resolved.fresh {
            self.record(&resolved.principal, team, user).await;
        }
        Ok(resolved.principal)
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
