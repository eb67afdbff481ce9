//! Reminders: while a request is pending and its rule says `remind_every`,
//! its approvers are reminded in the message's thread (Slack) or in a reply
//! to the card (Teams), at most `remind_max` times.
//!
//! The sweeper looks once a second. A reminder is due when the request is
//! older than `(n + 1) × remind_every` and `n` reminders were recorded.
//! Recording (`request.reminded`, by the system) and queueing
//! (`<channel>.remind`, in the request's lane, after its post) happen in
//! one transaction, so a reminder is never sent unrecorded, and the count
//! of recorded reminders is what stops them: the trail is the state.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::App;
use crate::clock;
use crate::domain::{Principal, Status};
use crate::error::AppResult;
use crate::store::requests::{self, ListFilter};

/// How often the sweeper looks for due reminders.
const EVERY: Duration = Duration::from_secs(1);

/// The audit kind of a recorded reminder.
pub const REMINDED: &str = "request.reminded";

impl App {
    pub async fn run_reminders(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.remind_due().await {
                tracing::error!(error = %format!("{e:#}"), "reminder sweep failed");
            }
            // Escalation is due by the same clock and sweeps alongside.
            if let Err(e) = self.escalate_due().await {
                tracing::error!(error = %format!("{e:#}"), "escalation sweep failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// The pending requests the sweepers look at, 500 at a time (the
    /// reminders and escalation sweeps share it).
    pub(super) async fn oldest_pending(&self) -> AppResult<Vec<requests::Approval>> {
        requests::list(
            &self.store,
            &ListFilter {
                status: Some(Status::Pending),
                limit: 500,
                ..Default::default()
            },
        )
        .await
    }

    /// Records and queues every reminder that is due; returns how many.
    pub async fn remind_due(&self) -> AppResult<usize> {
        if self.channels.is_empty() || !self.policy().any_reminders() {
            return Ok(0);
        }
        let pending = self.oldest_pending().await?;
        let now = clock::now();
        let mut queued = 0;
        for a in pending {
            let due = self.policy().reminders(&a.policy.rule);
            let Some((every, max)) = due else { continue };
            let Some(created) = clock::parse(&a.created_at) else {
                continue;
            };
            // Due by the count of recorded reminders, counted again inside
            // the write after taking the row: two replicas never both send
            // the same reminder.
            let (id, action) = (a.id, a.action.clone());
            let channels: Vec<&'static str> = self.channels.to_vec();
            let sent = self
                .store
                .write(move |ctx| {
                    Box::pin(async move {
                        if !requests::lock_pending(ctx, id).await? {
                            return Ok(false);
                        }
                        let sent = requests::count_events(ctx, id, REMINDED).await? as u32;
                        let next = chrono::Duration::from_std(every * (sent + 1))
                            .unwrap_or(chrono::TimeDelta::MAX);
                        if sent >= max || now < created + next {
                            return Ok(false);
                        }
                        ctx.audit(
                            Principal::system(),
                            Some((id, &action)),
                            REMINDED,
                            &json!({ "reminder": sent + 1, "of": max, "channels": channels }),
                        )
                        .await?;
                        for ch in &channels {
                            ctx.enqueue(
                                &format!("{ch}.remind"),
                                &format!("{ch}:{id}"),
                                Some(id),
                                &json!({ "request_id": id, "reminder": sent + 1 }),
                            )
                            .await?;
                        }
                        Ok(true)
                    })
                })
                .await?;
            if !sent {
                continue;
            }
            queued += 1;
        }
        Ok(queued)
    }
}
