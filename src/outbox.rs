//! The delivery worker: everything that reaches outside (webhooks, Slack,
//! Teams) is a row in the outbox, written in the same transaction as the
//! state change that caused it, and delivered from here with retries.
//!
//! Rows in one lane (`slack:<request>`, `webhook:<request>`) go strictly in
//! order and one at a time, so a message update never overtakes the post
//! that created it; different lanes run concurrently. A row is finished in
//! one transaction with the audit event and any chat-message reference its
//! delivery produced, so a restart neither loses nor repeats finished work.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::config::OutboxSettings;
use crate::error::AppResult;
use crate::store::chat_messages::{self, ChatMessage};
pub use crate::store::outbox::OutboxItem;
use crate::store::{Store, outbox};

/// Where a delivered chat message lives, to update it later.
#[derive(Debug, Clone)]
pub struct ChatMessageRef {
    pub channel: &'static str,
    pub conversation: String,
    pub message_id: String,
    pub extra: Option<Value>,
}

/// What one delivery attempt came to.
#[derive(Debug)]
pub enum Delivery {
    Delivered {
        audit: Option<(String, Value)>,
        message: Option<ChatMessageRef>,
    },
    /// Try again later: after `after` if the far end said so (Retry-After),
    /// else after the backoff.
    Retry {
        error: String,
        after: Option<Duration>,
        audit: Option<(String, Value)>,
    },
    /// Will never succeed (e.g. the receiver answered 4xx).
    Failed {
        error: String,
        audit: Option<(String, Value)>,
    },
}

#[async_trait::async_trait]
pub trait Deliverer: Send + Sync {
    async fn deliver(&self, item: &OutboxItem) -> Delivery;
}

#[derive(Clone)]
pub struct Outbox {
    store: Store,
    settings: OutboxSettings,
    handlers: Arc<HashMap<String, Arc<dyn Deliverer>>>,
}

impl Outbox {
    pub fn new(store: Store, settings: OutboxSettings) -> Self {
        Self {
            store,
            settings,
            handlers: Arc::new(HashMap::new()),
        }
    }

    pub fn register(&mut self, kind: &str, handler: Arc<dyn Deliverer>) {
        Arc::get_mut(&mut self.handlers)
            .expect("handlers are registered before the worker starts")
            .insert(kind.to_string(), handler);
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.handlers.keys().cloned().collect();
        k.sort();
        k
    }

    /// Runs until `shutdown`. Sleeps until the next row is due or a commit
    /// queues a new one.
    pub async fn run(self, shutdown: CancellationToken) {
        let kinds = self.kinds();
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let done = Arc::new(tokio::sync::Notify::new());
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let now = clock::now();
            // Busy lanes are not claimed: on PostgreSQL a claimed row is
            // leased, and one whose lane is busy would wait out the lease.
            let busy = Self::busy(&in_flight);
            let lease = self.settings.lease;
            match crate::store::outbox::due(&self.store, &kinds, &busy, now, 64, lease).await {
                Ok(items) => {
                    for item in items {
                        // Only this loop adds lanes and `due` gives one row
                        // per lane, none of them busy: this always inserts.
                        if !in_flight.lock().expect("lock").insert(item.lane.clone()) {
                            continue;
                        }
                        let this = self.clone();
                        let in_flight = in_flight.clone();
                        let done = done.clone();
                        tokio::spawn(async move {
                            let lane = item.lane.clone();
                            if let Err(e) = this.attempt(item).await {
                                tracing::error!(error = %e, "recording a delivery outcome failed");
                            }
                            in_flight.lock().expect("lock").remove(&lane);
                            done.notify_one();
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "reading the outbox failed"),
            }
            let busy = Self::busy(&in_flight);
            let wait = match crate::store::outbox::next_due(&self.store, &kinds, &busy).await {
                Ok(Some(t)) => (t - clock::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(30)),
                _ => Duration::from_secs(30),
            };
            let wait = wait.max(Duration::from_millis(5));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.store.signals.outbox.notified() => {}
                _ = done.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// The lanes with a delivery in flight.
    fn busy(in_flight: &Mutex<HashSet<String>>) -> Vec<String> {
        in_flight.lock().expect("lock").iter().cloned().collect()
    }

    /// One delivery attempt and its bookkeeping. Public so tests can drive
    /// the worker one step at a time.
    pub async fn attempt(&self, item: OutboxItem) -> AppResult<()> {
        // Read afresh now that the lane is ours: the earlier attempt that
        // freed it committed before it did, so this read sees its outcome.
        if !crate::store::outbox::still_due(&self.store, &item).await? {
            return Ok(());
        }
        let handler = self.handlers.get(&item.kind).cloned();
        let outcome = match handler {
            Some(h) => h.deliver(&item).await,
            None => Delivery::Retry {
                error: format!("no handler for {}", item.kind),
                after: None,
                audit: None,
            },
        };
        self.record(item, outcome).await
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let exp = self
            .settings
            .retry_base
            .saturating_mul(1u32 << attempts.clamp(0, 20) as u32);
        let capped = exp.min(self.settings.retry_max);
        // ±20 % jitter so many failed deliveries do not retry in lockstep.
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        capped.mul_f64(jitter)
    }

    async fn record(&self, item: OutboxItem, outcome: Delivery) -> AppResult<()> {
        let attempts = item.attempts + 1;
        let created = clock::parse(&item.created_at).unwrap_or_else(clock::now);
        let give_up = clock::now() - created
            >= chrono::Duration::from_std(self.settings.give_up_after)
                .unwrap_or(chrono::Duration::MAX);
        let retry_delay = match &outcome {
            Delivery::Retry { after, .. } => {
                Some(after.unwrap_or_default().max(self.backoff(item.attempts)))
            }
            _ => None,
        };
        let give_up_after = self.settings.give_up_after;
        metrics::counter!("countersign_outbox_attempts_total", "kind" => item.kind.clone(), "outcome" => match &outcome {
            Delivery::Delivered { .. } => "delivered",
            Delivery::Retry { .. } => "retry",
            Delivery::Failed { .. } => "failed",
        })
        .increment(1);
        self.store
            .write(move |ctx| {
                Box::pin(async move {
                    let request = item.request_uuid();
                    let action = match request {
                        Some(id) => crate::store::requests::action_of(ctx, id).await?,
                        None => None,
                    };
                    let req = request.map(|id| (id, action.as_deref().unwrap_or("")));
                    let actor = crate::domain::Principal::system();
                    match outcome {
                        Delivery::Delivered { audit, message } => {
                            outbox::delivered(ctx, item.id, attempts).await?;
                            if let (Some(m), Some(id)) = (message, request) {
                                let posted = ChatMessage { conversation: m.conversation, message_id: m.message_id, extra: m.extra };
                                chat_messages::record(ctx, id, m.channel, &posted).await?;
                            }
                            if let Some((kind, data)) = audit {
                                ctx.audit(actor, req, &kind, &data).await?;
                            }
                        }
                        Delivery::Retry { error, audit, .. } if !give_up => {
                            let at = next_attempt_at(ctx.now, retry_delay.unwrap_or_default(), give_up_after);
                            outbox::retry_at(ctx, item.id, attempts, &error, at).await?;
                            if let Some((kind, data)) = audit {
                                ctx.audit(actor, req, &kind, &data).await?;
                            }
                            ctx.after_commit(crate::store::AfterCommit::OutboxQueued);
                        }
                        Delivery::Retry { error, audit, .. } | Delivery::Failed { error, audit } => {
                            outbox::failed(ctx, item.id, attempts, &error).await?;
                            if let Some((kind, data)) = audit {
                                ctx.audit(actor, req, &kind, &data).await?;
                            }
                            let data = json!({ "outbox_id": item.id, "kind": item.kind, "attempts": attempts, "error": error });
                            ctx.audit(actor, req, "delivery.given_up", &data).await?;
                        }
                    }
                    Ok(())
                })
            })
            .await
    }
}

/// When a failed delivery is tried again: `delay` after `now`, but never
/// later than the give-up horizon (nor a year). The delay comes from the
/// far end's `Retry-After`, which is outside input: `Retry-After:
/// 99999999999999` overflowed the timestamp, the write job panicked and
/// rolled back, and the row stayed due, so the receiver was called again
/// every few milliseconds (found by `fuzz/`, see docs/FUZZING.md).
pub fn next_attempt_at(
    now: chrono::DateTime<chrono::Utc>,
    delay: Duration,
    give_up_after: Duration,
) -> chrono::DateTime<chrono::Utc> {
    const A_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let delay = delay.min(give_up_after).min(A_YEAR);
    // A year always fits in a TimeDelta and after any real clock's `now`.
    let delay = chrono::Duration::from_std(delay).unwrap_or_default();
    now.checked_add_signed(delay).unwrap_or(now)
}

/// Reads `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// What went wrong with a request that got no answer, in a few words
/// (reqwest's own message repeats the URL, which is already audited).
pub fn transport_error(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        h.insert(
            reqwest::header::RETRY_AFTER,
            later.to_rfc2822().parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn a_retry_after_of_millions_of_years_is_scheduled_at_the_give_up_horizon() {
        // The input fuzz/ found: it overflowed `now + delay` and panicked.
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::RETRY_AFTER,
            "99999999999999".parse().unwrap(),
        );
        let now = clock::now();
        let day = Duration::from_secs(24 * 3600);
        let at = next_attempt_at(now, retry_after(&h).unwrap(), day);
        assert_eq!(at, now + chrono::Duration::days(1));
        let at = next_attempt_at(now, Duration::MAX, Duration::MAX);
        assert_eq!(at, now + chrono::Duration::days(365));
        assert!(clock::fmt(at) > clock::fmt(now), "due later, also as text");
    }
}
