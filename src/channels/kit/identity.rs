//! Who a chat account is, as a principal, the same way on every platform.
//!
//! 1. An operator's explicit link (`countersign identities link
//!    <platform>:<account> user:…`) wins. It is read from the store on every
//!    resolution, so an unlink takes effect at once.
//! 2. Otherwise a recent answer of the platform's lookup, from a cache: a
//!    person found is trusted for [`TTL`], an account with no usable
//!    e-mail is remembered as unmapped for [`NEGATIVE_TTL`], so a burst of
//!    clicks costs one API call and a fixed profile is picked up soon.
//! 3. Otherwise the platform's e-mail lookup (Slack `users.info`, the Bot
//!    Connector's member lookup).
//!
//! Bots, deleted accounts and profiles without an e-mail stay unmapped:
//! they cannot decide, and their click is audited ([`audit_unmapped`]) with
//! a principal-shaped actor, `unmapped:<platform>:<account>`, that names
//! the account without claiming it is anyone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::binding;
use crate::domain::{Principal, Verdict};
use crate::service::App;
use crate::store::identities;

/// How long a looked-up e-mail is trusted.
pub const TTL: Duration = Duration::from_secs(10 * 60);
/// How long "this account has no usable e-mail" is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Past this many entries, expired ones are dropped before adding more.
const MAX_ENTRIES: usize = 10_000;

/// Why a chat account has no principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// Nothing links this account to a person. `external` is the account
    /// as `identities link` takes it (`slack:T1/U1`, `teams:<AAD id>`).
    Unmapped { external: String, why: String },
    /// The platform or the store could not be asked just now.
    Unavailable(String),
}

impl Unresolved {
    pub fn unmapped(external: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Unmapped {
            external: external.into(),
            why: why.into(),
        }
    }

    /// A sentence for the person who clicked, the same on every platform.
    pub fn message(&self) -> String {
        match self {
            Unresolved::Unmapped { external, why } => format!(
                "Countersign cannot tell who you are ({why}), so it cannot take your decision. \
                 Ask an operator to link your account: `countersign identities link {external} user:you@example.com`."
            ),
            Unresolved::Unavailable(why) => format!(
                "Countersign could not look up who you are just now ({why}); nothing was recorded. Please try again in a moment."
            ),
        }
    }
}

/// The audit actor of an account that maps to no one.
pub fn unmapped_actor(external: &str) -> String {
    format!("unmapped:{external}")
}

/// Audits a click by an account that maps to no one (`decision.blocked`,
/// reason `unknown_person`), alike on every platform. A lookup that could
/// not be made is not audited: it says nothing about the person.
pub async fn audit_unmapped(
    app: &App,
    why: &Unresolved,
    id: Uuid,
    verdict: Verdict,
    channel: &'static str,
) {
    let Unresolved::Unmapped { external, .. } = why else {
        return;
    };
    let actor = unmapped_actor(external);
    let done = binding::blocked(
        app,
        &actor,
        id,
        verdict,
        channel,
        "unknown_person",
        &why.message(),
    )
    .await;
    if let Err(e) = done {
        tracing::error!(error = %format!("{e:#}"), "recording an unmapped click failed");
    }
}

/// A resolution, and whether it was new (not served from the cache): a
/// platform may note the account then (Slack records it for mentions).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub principal: Principal,
    pub fresh: bool,
}

/// The operator link, the cache and the lookup, in that order.
pub struct Resolver {
    app: App,
    cache: Mutex<HashMap<String, (Option<Principal>, Instant)>>,
}

impl Resolver {
    pub fn new(app: App) -> Self {
        Self {
            app,
            cache: Mutex::default(),
        }
    }

    /// The principal behind `external`. `lookup` asks the platform: a
    /// person, `None` for an account with no usable e-mail (remembered as
    /// unmapped, with `no_mail` as the reason), or why it could not ask.
    pub async fn resolve<F, Fut>(
        &self,
        external: &str,
        no_mail: &str,
        lookup: F,
    ) -> Result<Resolved, Unresolved>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Principal>, Unresolved>>,
    {
        if let Some(p) = self.linked(external).await? {
            let fresh = self.cached(external).flatten().as_ref() != Some(&p);
            if fresh {
                self.remember(external, Some(p.clone()), TTL);
            }
            return Ok(Resolved {
                principal: p,
                fresh,
            });
        }
        if let Some(hit) = self.cached(external) {
            return hit
                .map(|principal| Resolved {
                    principal,
                    fresh: false,
                })
                .ok_or_else(|| Unresolved::unmapped(external, no_mail));
        }
        match lookup().await? {
            Some(p) => {
                self.remember(external, Some(p.clone()), TTL);
                Ok(Resolved {
                    principal: p,
                    fresh: true,
                })
            }
            None => {
                self.remember(external, None, NEGATIVE_TTL);
                Err(Unresolved::unmapped(external, no_mail))
            }
        }
    }

    /// The operator's link for `external`, if any.
    pub async fn linked(&self, external: &str) -> Result<Option<Principal>, Unresolved> {
        identities::linked(&self.app.store, external)
            .await
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "reading identity links failed");
                Unresolved::Unavailable("the identity store could not be read".into())
            })
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
        if cache.len() > MAX_ENTRIES {
            cache.retain(|_, (_, until)| *until > now);
        }
        cache.insert(external.to_string(), (principal, now + ttl));
    }
}

/// A looked-up e-mail address as a user principal; `None` when it is not
/// one (such an account stays unmapped).
pub fn from_email(email: &str) -> Option<Principal> {
    let email = email.trim();
    (!email.is_empty())
        .then(|| Principal::parse(&format!("user:{email}")).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clicker_is_told_how_to_get_linked_on_every_platform() {
        for external in ["slack:T1/U1", "teams:aad-1"] {
            let m = Unresolved::unmapped(external, "no e-mail").message();
            assert!(m.contains("cannot tell who you are (no e-mail)"), "{m}");
            assert!(
                m.contains(&format!("identities link {external} user:")),
                "{m}"
            );
        }
        assert_eq!(unmapped_actor("teams:aad-1"), "unmapped:teams:aad-1");
        assert!(from_email(" a@example.com ").is_some());
        assert!(from_email("").is_none());
        assert!(from_email("not an address").is_none());
    }
}
