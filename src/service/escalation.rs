//! The escalation sweeper: a request still pending `escalate_after` after
//! it was made has, once, the rule's `escalate_to` added to the people who
//! may approve it. The required count stays.
//!
//! Check and record happen in one write: the request's row is taken first
//! ([`requests::lock_pending`]), then its `request.escalated` events are
//! counted, so two replicas sweeping at once escalate it once. The widened
//! set is written to the row and carried by the event, so replay (and
//! `audit verify`) rebuilds the same approvers; the decision rules then
//! judge a click from an added person like any other.
//!
//! The same write queues the channels' work: every posted message is
//! updated ("Escalated to oncall at …"), and where the rule names an
//! `escalate_channel` / `escalate_conversation` a notice goes there
//! (`<channel>.escalate`), mentioning the people escalation added.

use serde_json::json;

use super::App;
use super::approvals::update_channels;
use crate::clock;
use crate::domain::Principal;
use crate::domain::escalation::ESCALATED;
use crate::error::{AppError, AppResult};
use crate::store::requests;

impl App {
    /// Escalates every pending request that is due; returns how many.
    pub async fn escalate_due(&self) -> AppResult<usize> {
        let policy = self.policy();
        if !policy.any_escalations() {
            return Ok(0);
        }
        let pending = self.oldest_pending().await?;
        let now = clock::now();
        let mut escalated = 0;
        for a in pending {
            let Some(esc) = policy.escalation(&a.policy.rule).cloned() else {
                continue;
            };
            let Some(created) = clock::parse(&a.created_at) else {
                continue;
            };
            if !esc.due(created, now) {
                continue;
            }
            let (id, channels) = (a.id, self.channels.clone());
            let done = self
                .store
                .write(move |ctx| {
                    Box::pin(async move {
                        if !requests::lock_pending(ctx, id).await?
                            || requests::count_events(ctx, id, ESCALATED).await? > 0
                        {
                            return Ok(false);
                        }
                        // A row that disagrees with its trail is left for an operator.
                        let req = match requests::load_checked(ctx, id).await {
                            Ok(Some(req)) => req,
                            Ok(None) | Err(AppError::Integrity { .. }) => return Ok(false),
                            Err(e) => return Err(e),
                        };
                        let approvers = esc.widen(&req.approvers);
                        let added: Vec<&Principal> = approvers
                            .iter()
                            .filter(|p| !req.approvers.contains(p))
                            .collect();
                        requests::set_approvers(ctx, id, &approvers).await?;
                        ctx.audit(
                            Principal::system(),
                            Some((id, &req.action)),
                            ESCALATED,
                            &json!({
                                "approvers": approvers, "added": added, "to": esc.names,
                                "label": esc.label(), "after_secs": esc.after.as_secs(),
                            }),
                        )
                        .await?;
                        update_channels(ctx, &channels, id).await?;
                        // Told where the rule says, after the update in the
                        // request's lane, naming the people it added.
                        for ch in channels.iter() {
                            let Some(to) = esc.notice_to(ch) else {
                                continue;
                            };
                            ctx.enqueue(
                                &format!("{ch}.escalate"),
                                &format!("{ch}:{id}"),
                                Some(id),
                                &json!({
                                    "request_id": id, "conversation": to, "added": added,
                                    "label": esc.label(), "after_secs": esc.after.as_secs(),
                                }),
                            )
                            .await?;
                        }
                        Ok(true)
                    })
                })
                .await?;
            escalated += usize::from(done);
        }
        Ok(escalated)
    }
}
