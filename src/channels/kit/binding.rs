//! Every chat decision is bound to the payload it was made on.
//!
//! The API may decide without `payload_sha256`; a chat click may not. Our
//! Slack buttons and Teams cards always carry the hash of the request as
//! shown, so a click that arrives without one (or with something that is not
//! a SHA-256) did not come from a message we rendered as it is now: it is
//! refused, never accepted unbound, and the refusal is audited as
//! `decision.blocked` (reason `unbound`) like every other refused click.
//! A hash that is well formed but wrong is the service's to refuse
//! (`App::decide` compares it with the request's).

use serde_json::json;
use uuid::Uuid;

use crate::domain::Verdict;
use crate::error::AppResult;
use crate::service::App;
use crate::store::requests;

/// What the clicker is told when the click carried no payload hash.
pub const UNBOUND: &str = "This click did not say which version of the request it was made on, so it was not counted. Decide on the current message.";

/// The hash a click carried, if it is one: 64 lowercase hex digits, the
/// form every rendered message uses.
pub fn shown_hash(h: Option<&str>) -> Option<String> {
    h.filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .map(str::to_string)
}

/// Records that `actor` clicked `verdict` on request `id` through `channel`
/// without a payload hash. Writes nothing else; an unknown request is not
/// an event (there is nothing to bind it to).
pub async fn refuse_unbound(
    app: &App,
    actor: &str,
    id: Uuid,
    verdict: Verdict,
    channel: &'static str,
) -> AppResult<()> {
    blocked(app, actor, id, verdict, channel, "unbound", UNBOUND).await
}

/// Audits a click that did not count before it reached `App::decide`
/// (which audits its own refusals): `decision.blocked` with the `reason`
/// code and the `message` the clicker was shown, in one shape for every
/// channel. Nothing is written for a request that does not exist.
pub async fn blocked(
    app: &App,
    actor: &str,
    id: Uuid,
    verdict: Verdict,
    channel: &'static str,
    reason: &'static str,
    message: &str,
) -> AppResult<()> {
    let (actor, message) = (actor.to_string(), message.to_string());
    app.store
        .write(move |ctx| {
            Box::pin(async move {
                let Some(req) = requests::load(ctx, id).await? else {
                    return Ok(());
                };
                ctx.audit(
                    &actor,
                    Some((id, &req.action)),
                    "decision.blocked",
                    &json!({
                        "reason": reason, "message": message,
                        "verdict": verdict, "channel": channel, "status": req.status,
                    }),
                )
                .await?;
                Ok(())
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_sha256_binds_a_click() {
        assert!(shown_hash(Some(&"ab".repeat(32))).is_some());
        for bad in [
            "",
            "AB",
            &"AB".repeat(32),
            &"ab".repeat(31),
            &"zz".repeat(32),
        ] {
            assert!(shown_hash(Some(bad)).is_none(), "{bad}");
        }
        assert!(shown_hash(None).is_none());
    }
}
