//! The outbox rows that carry signed chain heads to the remote checkpoint
//! sinks (a webhook, a Slack channel, a Teams conversation), and the
//! questions asked of them. The deliverers and the publishing loop are in
//! `crate::checkpoint_sinks`.
//!
//! Each sink has one lane and at most one undelivered row: publishing a
//! newer head marks the one still waiting `superseded` in the same
//! transaction that queues the new one. A head implies every head before
//! it (the chain links them), so a receiver that gets only the newest
//! loses nothing, and a receiver that is down for a day costs one row, not
//! one per interval.

use serde_json::Value;

use super::checkpoints::Checkpoint;
use super::{Store, WriteCtx};
use crate::error::AppResult;

/// A remote place signed heads go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Webhook,
    Slack,
    Teams,
}

impl Sink {
    pub const ALL: [Sink; 3] = [Sink::Webhook, Sink::Slack, Sink::Teams];

    /// The outbox kind, which is also the sink's one lane.
    pub fn kind(self) -> &'static str {
        match self {
            Sink::Webhook => "checkpoint.webhook",
            Sink::Slack => "checkpoint.slack",
            Sink::Teams => "checkpoint.teams",
        }
    }

    /// How `/audit verify` names it.
    pub fn name(self) -> &'static str {
        match self {
            Sink::Webhook => "webhook",
            Sink::Slack => "slack",
            Sink::Teams => "teams",
        }
    }

    pub fn from_kind(kind: &str) -> Option<Sink> {
        Sink::ALL.into_iter().find(|s| s.kind() == kind)
    }
}

/// The seq of the newest signed head, read outside the writer: a cheap
/// look before asking the writer for a transaction.
pub async fn newest_signed_seq(store: &Store) -> AppResult<Option<i64>> {
    Ok(on!(store.db(),
        sqlite: "SELECT MAX(seq) FROM audit_signatures",
        postgres: "SELECT MAX(seq) FROM audit_signatures",
        |sql, e| sqlx::query_scalar(sql).fetch_one(e).await?))
}

/// The newest head already queued for any sink, so a restarted service
/// does not publish the same head again.
pub async fn newest_queued_seq(store: &Store) -> AppResult<Option<i64>> {
    let payload: Option<String> = on!(store.db(),
        sqlite: "SELECT payload FROM outbox WHERE kind IN (?, ?, ?) ORDER BY id DESC LIMIT 1",
        postgres: "SELECT payload::text FROM outbox WHERE kind IN ($1, $2, $3) ORDER BY id DESC LIMIT 1",
        |sql, e| sqlx::query_scalar(sql)
            .bind(Sink::Webhook.kind())
            .bind(Sink::Slack.kind())
            .bind(Sink::Teams.kind())
            .fetch_optional(e)
            .await?);
    Ok(payload
        .and_then(|p| serde_json::from_str::<Checkpoint>(&p).ok())
        .map(|c| c.seq))
}

/// Inside the writer's transaction: queues the newest signed head for each
/// of `sinks`, unless it is not newer than `after`; returns its seq. Writes
/// no audit event: the head is its own record, and an event here would
/// make a newer head to publish, forever.
pub async fn publish(
    ctx: &mut WriteCtx,
    sinks: &[Sink],
    after: Option<i64>,
) -> AppResult<Option<i64>> {
    let head: Option<(i64, String, String, String, String)> = ctx.row(stmt!(
        sqlite: "SELECT s.seq, s.hash, e.ts, s.signature, s.public_key FROM audit_signatures s \
            JOIN audit_events e ON e.seq = s.seq ORDER BY s.seq DESC LIMIT 1",
        postgres: "SELECT s.seq, s.hash, e.ts, s.signature, s.public_key FROM audit_signatures s \
            JOIN audit_events e ON e.seq = s.seq ORDER BY s.seq DESC LIMIT 1",
    ))
        .await?;
    let Some((seq, hash, ts, signature, key_id)) = head else {
        return Ok(None);
    };
    if after.is_some_and(|a| seq <= a) {
        return Ok(None);
    }
    let head = Checkpoint {
        seq,
        hash,
        ts,
        signature,
        key_id,
    };
    let payload = serde_json::to_value(&head).expect("a checkpoint serializes");
    let now = ctx.now_str();
    for sink in sinks {
        let why = format!("superseded by the head at seq {seq}");
        ctx.exec(stmt!(
            sqlite: "UPDATE outbox SET done_at = ?, outcome = 'superseded', last_error = ? \
                WHERE kind = ? AND done_at IS NULL",
            postgres: "UPDATE outbox SET done_at = $1::timestamptz, outcome = 'superseded', last_error = $2, \
                locked_by = NULL, locked_until = NULL WHERE kind = $3 AND done_at IS NULL",
            [&now, &why, sink.kind()],
        ))
        .await?;
        ctx.enqueue(sink.kind(), sink.kind(), None, &payload)
            .await?;
    }
    Ok(Some(seq))
}

/// The newest head a remote sink accepted, and which sink.
pub async fn newest_delivered(store: &Store) -> AppResult<Option<(Sink, Checkpoint)>> {
    let row: Option<(String, String)> = on!(store.db(),
        sqlite: "SELECT kind, payload FROM outbox WHERE kind IN (?, ?, ?) AND outcome = 'delivered' \
                 ORDER BY id DESC LIMIT 1",
        postgres: "SELECT kind, payload::text FROM outbox WHERE kind IN ($1, $2, $3) AND outcome = 'delivered' \
                   ORDER BY id DESC LIMIT 1",
        |sql, e| sqlx::query_as(sql)
            .bind(Sink::Webhook.kind())
            .bind(Sink::Slack.kind())
            .bind(Sink::Teams.kind())
            .fetch_optional(e)
            .await?);
    Ok(row.and_then(|(kind, payload)| {
        let c = serde_json::from_str::<Checkpoint>(&payload).ok()?;
        Some((Sink::from_kind(&kind)?, c))
    }))
}

/// A checkpoint row's payload, as queued.
pub fn parse(payload: &Value) -> Option<Checkpoint> {
    serde_json::from_value(payload.clone()).ok()
}
