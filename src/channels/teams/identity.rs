//! Who a Teams account is, as a principal: the kit's resolver
//! ([`crate::channels::kit::identity`]: operator link `teams:<AAD object
//! id>`, then the cache, then this lookup) over the Bot Connector's member
//! lookup, whose e-mail (or UPN) becomes `user:<email>`.
//!
//! An activity usually carries the AAD object id; when it does not, the
//! member lookup is made first to learn it, and its answer is the lookup.

use super::Teams;
use super::activity::Activity;
use super::connector::{CallError, Member};
use crate::channels::kit::identity::{self, Unresolved};
use crate::domain::Principal;

/// Why an account with no usable e-mail is unmapped.
const NO_MAIL: &str = "your Teams account has no usable e-mail address";

/// The link key of an account without an AAD object id, for the message.
const NO_AAD: &str = "teams:AAD_OBJECT_ID";

/// The principal of the account `user_id` (AAD `aad`) in `a`'s
/// conversation.
pub async fn resolve(
    teams: &Teams,
    a: &Activity,
    user_id: &str,
    aad: Option<&str>,
) -> Result<Principal, Unresolved> {
    let lookup = || async {
        let (Some(service_url), Some(conv)) = (a.service_url.as_deref(), a.conversation.as_ref())
        else {
            return Err(Unresolved::unmapped(
                aad.map_or(NO_AAD.to_string(), |x| format!("teams:{x}")),
                "there is no conversation to look you up in",
            ));
        };
        if user_id.is_empty() {
            return Err(Unresolved::unmapped(
                aad.map_or(NO_AAD.to_string(), |x| format!("teams:{x}")),
                "Teams sent no user id",
            ));
        }
        teams
            .connector
            .member(service_url, &conv.id, user_id)
            .await
            .map_err(|e| {
                let external = aad.map_or(NO_AAD.to_string(), |x| format!("teams:{x}"));
                match e {
                    CallError::Retry { error, .. } => Unresolved::Unavailable(error),
                    CallError::Failed { error, .. } => {
                        Unresolved::unmapped(external, format!("the member lookup failed: {error}"))
                    }
                }
            })
    };
    let found = |m: Member| {
        m.email
            .or(m.user_principal_name)
            .and_then(|mail| identity::from_email(&mail))
    };
    match aad.filter(|s| !s.is_empty()) {
        Some(aad) => {
            let external = format!("teams:{aad}");
            let r = teams
                .identities
                .resolve(&external, NO_MAIL, || async {
                    let m = lookup().await?;
                    if m.aad_object_id.as_deref().is_some_and(|other| other != aad) {
                        return Err(Unresolved::unmapped(
                            &external,
                            "the member lookup named someone else",
                        ));
                    }
                    Ok(found(m))
                })
                .await?;
            Ok(r.principal)
        }
        None => {
            // Without the AAD id there is no link key and no cache key: ask
            // first, then go through the resolver with what Teams said.
            let m = lookup().await?;
            let Some(aad) = m.aad_object_id.clone().filter(|s| !s.is_empty()) else {
                return Err(Unresolved::unmapped(NO_AAD, "Teams sent no AAD object id"));
            };
            let external = format!("teams:{aad}");
            let r = teams
                .identities
                .resolve(&external, NO_MAIL, || async { Ok(found(m)) })
                .await?;
            Ok(r.principal)
        }
    }
}
