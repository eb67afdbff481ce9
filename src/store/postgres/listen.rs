//! Hearing the other replicas: every write batch on PostgreSQL notifies
//! [`NOTIFY_CHANNEL`](crate::store::NOTIFY_CHANNEL) at commit (a request a
//! long-poll may wait on changed, an outbox row was queued, a deadline was
//! set), and each replica listens here and wakes its own waiters and
//! workers, so a decision taken on replica A answers the agent waiting on
//! replica C at once.
//!
//! A listener that loses its connection cannot know what it missed, so
//! when it is back it wakes every local waiter and both workers: each
//! re-reads the database, which is the truth; a spurious wake costs one
//! read.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::store::{NOTIFY_CHANNEL, Signals};
use crate::waiters::Waiters;

/// Runs until the pool is closed.
pub async fn run(pool: PgPool, waiters: Waiters, signals: Signals) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if pool.is_closed() {
            return;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' commits; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        if !first {
            // Whatever was committed while we were not listening.
            waiters.wake_all();
            signals.outbox.notify_one();
            signals.deadlines.notify_one();
        }
        first = false;
        // `try_recv` hands back `None` when the connection drops, instead
        // of reconnecting quietly and hiding the gap.
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => dispatch(n.payload(), &waiters, &signals),
                Ok(None) => {
                    tracing::warn!("the listener's connection dropped; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Acts on one notification payload (see `store::notifications`).
fn dispatch(payload: &str, waiters: &Waiters, signals: &Signals) {
    if let Some(id) = payload.strip_prefix("wake:") {
        if let Ok(id) = Uuid::parse_str(id) {
            waiters.wake(&id);
        }
    } else if payload == "outbox" {
        signals.outbox.notify_one();
    } else if payload == "deadline" {
        signals.deadlines.notify_one();
    }
}
