//! Slack over Socket Mode: the service opens a WebSocket to Slack
//! (`apps.connections.open` with the app-level `xapp-` token, then the URL
//! it returns), and clicks, deny-form submissions and `/audit` arrive over
//! it, so the service needs no public URL.
//!
//! Each envelope goes through the same [`interactions::dispatch`] and
//! [`commands::dispatch`] as the signed HTTP endpoints; the connection,
//! opened with the app token, is what authenticates it. It is acknowledged
//! (`{"envelope_id": …}`, with the answer as `payload` where Slack takes
//! one) within the same [`super::ANSWER_WITHIN`] budget as an HTTP answer.
//!
//! Exactly once across a replica set: Slack may deliver one envelope to
//! several connections and redelivers one it did not see acknowledged, so
//! before handling it the envelope_id is claimed in the store
//! ([`crate::store::socket_envelopes`]); whoever loses the claim only
//! acknowledges. The claim comes first: a process that dies mid-click
//! loses that click (the approver clicks again), rather than two
//! processes both acting on it.
//!
//! The connection is reopened when Slack says `disconnect` (at once, the
//! old one finishing its acknowledgements) and when it drops or goes
//! silent (after a capped, jittered [`Backoff`]).
//!
//! Written on tokio-tungstenite rather than slack-morphism's
//! `SlackClientSocketModeListener`: that listener hands its callbacks a
//! re-parsed, typed event without the envelope_id (which the dedupe needs)
//! and not the payload as sent (which our strict reader checks), and it
//! reconnects after a fixed 30 s. slack-morphism's client still makes the
//! `apps.connections.open` call ([`super::client::SlackApi`]).

mod backoff;
mod connection;
pub mod envelope;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
use connection::Ended;
use envelope::Envelope;
pub use status::SocketStatus;

use super::{Slack, commands, interactions};
use crate::config::Secret;
use crate::store::socket_envelopes;

/// How long a WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Claims older than this are pruned; Slack retries for a few minutes.
const KEEP_CLAIMS: Duration = Duration::from_secs(3600);
/// Pruning runs with a claim at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The Socket Mode listener of one process.
#[derive(Clone)]
pub struct SocketMode {
    slack: Arc<Slack>,
    app_token: Secret,
    status: SocketStatus,
    /// When claims were last pruned (Unix seconds).
    pruned_at: Arc<AtomicI64>,
}

impl SocketMode {
    pub fn new(slack: Arc<Slack>, app_token: Secret) -> Self {
        Self {
            slack,
            app_token,
            status: SocketStatus::default(),
            pruned_at: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn status(&self) -> SocketStatus {
        self.status.clone()
    }

    /// Keeps one connection open until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new();
        while !stop.is_cancelled() {
            let problem = match self.connect().await {
                Ok(ws) => match connection::serve(&self, ws, &stop).await {
                    Ended::Stopped => break,
                    Ended::Refresh { reason, greeted } => {
                        tracing::info!(%reason, "Slack asked for a new Socket Mode connection");
                        self.status
                            .down(format!("Slack sent disconnect ({reason})"));
                        if greeted {
                            backoff.reset();
                        }
                        // A refresh is routine: reconnect at once. Anything
                        // else (link_disabled, …) waits like a failure.
                        if reason == "refresh_requested" || reason == "warning" {
                            continue;
                        }
                        format!("Slack sent disconnect ({reason})")
                    }
                    Ended::Dropped { why, greeted } => {
                        if greeted {
                            backoff.reset();
                        }
                        why
                    }
                },
                Err(why) => why,
            };
            self.status.down(problem.clone());
            let wait = backoff.next_wait();
            tracing::warn!(problem = %problem, retry_in = ?wait, "Slack Socket Mode is not connected; trying again");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
        }
        self.status.down("the service is stopping");
    }

    /// Asks Slack for a WebSocket URL and opens it. The URL carries a
    /// one-time ticket and is not logged; errors name neither it nor the
    /// token.
    async fn connect(&self) -> Result<connection::Socket, String> {
        let url = self
            .slack
            .api
            .open_socket_url(&self.app_token)
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(format!("opening the Socket Mode WebSocket failed: {e}")),
            Err(_) => Err(format!(
                "opening the Socket Mode WebSocket took more than {CONNECT_TIMEOUT:?}"
            )),
        }
    }

    /// Handles one envelope and returns its acknowledgement; `None` leaves
    /// it unacknowledged, so Slack delivers it again (the claim could not
    /// be written: nothing was done).
    async fn handle(&self, envelope: Envelope) -> Option<String> {
        let id = envelope.id.clone();
        match self.claim(&envelope).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(envelope_id = %id, retry_attempt = envelope.retry_attempt,
                    "Socket Mode envelope already handled elsewhere; acknowledging only");
                return Some(envelope::ack(&id, None));
            }
            Err(e) => {
                tracing::warn!(envelope_id = %id, error = %e,
                    "could not claim a Socket Mode envelope; Slack will deliver it again");
                return None;
            }
        }
        let answer = match self.dispatch(&envelope).await {
            Ok(answer) => answer,
            Err(e) => {
                // The same payload would be refused again on a retry.
                tracing::warn!(envelope_id = %id, kind = %envelope.kind, error = %e,
                    "a Socket Mode envelope was refused");
                None
            }
        };
        let answer = answer.filter(|_| envelope.accepts_response_payload);
        Some(envelope::ack(&id, answer))
    }

    async fn dispatch(&self, envelope: &Envelope) -> crate::error::AppResult<Option<Value>> {
        match envelope.kind.as_str() {
            "interactive" => {
                let payload = envelope.payload.to_string();
                interactions::dispatch(self.slack.clone(), payload.as_bytes()).await
            }
            "slash_commands" => {
                let command: commands::SlashCommand =
                    serde_json::from_value(envelope.payload.clone()).map_err(|e| {
                        crate::error::AppError::BadRequest(format!(
                            "the slash command is not valid: {e}"
                        ))
                    })?;
                let reply = commands::dispatch(self.slack.clone(), command).await?;
                Ok(Some(
                    serde_json::to_value(reply).expect("a reply serializes"),
                ))
            }
            // The app subscribes to no Events API events.
            _ => Ok(None),
        }
    }

    /// Takes the envelope for this process (see the module docs), pruning
    /// old claims now and then in the same write.
    async fn claim(&self, envelope: &Envelope) -> crate::error::AppResult<bool> {
        let now = crate::clock::now().timestamp();
        let last = self.pruned_at.load(Ordering::Relaxed);
        let prune = now - last >= PRUNE_EVERY.as_secs() as i64
            && self
                .pruned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        let (id, kind) = (envelope.id.clone(), envelope.kind.clone());
        self.slack
            .app
            .store
            .write(move |ctx| {
                Box::pin(async move {
                    if prune {
                        let before = ctx.now
                            - chrono::Duration::from_std(KEEP_CLAIMS).expect("an hour fits");
                        socket_envelopes::prune(ctx, before).await?;
                    }
                    socket_envelopes::claim(ctx, &id, &kind).await
                })
            })
            .await
    }
}
