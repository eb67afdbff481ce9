//! The expiry sweeper. Sleeps until the earliest pending deadline (or until
//! a new request brings one closer), then expires every overdue request
//! through the same path as a decision: final state, audit event, chat
//! updates, webhook, waiters woken. Expiry denies unless the rule said
//! `on_expiry: approve`.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::App;
use super::approvals::on_final;
use crate::clock;
use crate::domain::policy::OnExpiry;
use crate::domain::{Principal, Status};
use crate::error::{AppError, AppResult};
use crate::store::requests;

/// Longest sleep between sweeps; a safety net, since new deadlines wake us.
const MAX_SLEEP: Duration = Duration::from_secs(30);

impl App {
    pub async fn run_expiry(self, shutdown: CancellationToken) {
        loop {
            let swept = self.expire_due().await;
            match &swept {
                Ok(n) if *n > 0 => tracing::info!(expired = n, "expired overdue requests"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
            }
            let next = requests::next_deadline(&self.store).await.unwrap_or(None);
            let sleep = next
                .map(|t| (t - clock::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            // An overdue row that could not be expired (it disagrees with its
            // trail) must not turn the sweeper into a busy loop.
            let sleep = if sleep.is_zero() && !matches!(swept, Ok(n) if n > 0) {
                Duration::from_secs(1)
            } else {
                sleep
            };
            tokio::select! {
                // A few ms past the deadline so the row compares as overdue.
                _ = tokio::time::sleep(sleep + Duration::from_millis(5)) => {}
                _ = self.store.signals.deadlines.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Expires every pending request whose deadline has passed; returns how many.
    pub async fn expire_due(&self) -> AppResult<usize> {
        let channels = self.channels.clone();
        self.store
            .write(move |ctx| {
                Box::pin(async move {
                    let now = ctx.now_str();
                    let ids = requests::overdue(ctx, &now, 500).await?;
                    let mut expired = 0;
                    for id in ids {
                        // A row that disagrees with its trail is not expired (nor anything
                        // else); it stays for an operator, and the rest still expire.
                        let req = match requests::load_checked(ctx, id).await {
                            Ok(Some(req)) => req,
                            Ok(None) | Err(AppError::Integrity { .. }) => continue,
                            Err(e) => return Err(e),
                        };
                        let (status, reason) = match req.on_expiry() {
                            OnExpiry::Deny => (Status::Expired, "expired without a decision; expiry denies".to_string()),
                            OnExpiry::Approve => (Status::Approved, format!("expired; rule '{}' approves on expiry", req.policy.rule)),
                        };
                        requests::finalize(ctx, id, status, &now, Principal::system(), &reason).await?;
                        ctx.audit(Principal::system(), Some((id, &req.action)), "request.expired", &json!({
                            "outcome": status, "reason": reason, "expires_at": req.expires_at,
                            "approvals": req.approvals.len(), "required_approvals": req.required_approvals,
                        }))
                        .await?;
                        let after = requests::load(ctx, id).await?.ok_or_else(|| AppError::Internal(anyhow::anyhow!("request vanished")))?;
                        on_final(ctx, &channels, &after).await?;
                        expired += 1;
                    }
                    Ok(expired)
                })
            })
            .await
    }
}
