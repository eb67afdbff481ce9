//! Slack Socket Mode envelopes already taken, so each is handled once.
//!
//! Slack may deliver one envelope to several of an app's connections (a
//! replica set holds one or more each) and delivers again what was not
//! acknowledged in time (`retry_attempt`). The connection that inserts the
//! envelope_id first handles it; the others only acknowledge it. The claim
//! is one `INSERT … ON CONFLICT DO NOTHING` on both backends, committed
//! through the writer before the envelope is handled, so it holds across
//! processes and restarts.

use chrono::{DateTime, Utc};

use super::{Store, WriteCtx};
use crate::clock;
use crate::error::AppResult;

/// Takes `envelope_id` for this process: true if nobody had, false if
/// another connection (here or on another replica) already did.
pub async fn claim(ctx: &mut WriteCtx, envelope_id: &str, kind: &str) -> AppResult<bool> {
    let now = ctx.now_str();
    let inserted = ctx.exec(stmt!(
        sqlite: "INSERT INTO socket_envelopes (envelope_id, kind, received_at) VALUES (?, ?, ?) \
            ON CONFLICT (envelope_id) DO NOTHING",
        postgres: "INSERT INTO socket_envelopes (envelope_id, kind, received_at) VALUES ($1, $2, $3::timestamptz) \
            ON CONFLICT (envelope_id) DO NOTHING",
        [envelope_id, kind, &now],
    ))
        .await?;
    Ok(inserted == 1)
}

/// Whether `envelope_id` has been claimed (and not yet pruned).
pub async fn is_claimed(store: &Store, envelope_id: &str) -> AppResult<bool> {
    let found: Option<i64> = on!(store.db(),
        sqlite: "SELECT 1 FROM socket_envelopes WHERE envelope_id = ?",
        postgres: "SELECT 1::bigint FROM socket_envelopes WHERE envelope_id = $1",
        |sql, e| sqlx::query_scalar(sql).bind(envelope_id).fetch_optional(e).await?);
    Ok(found.is_some())
}

/// Forgets envelopes received before `before`; returns how many. Slack
/// stops retrying within minutes, so an old row guards against nothing.
pub async fn prune(ctx: &mut WriteCtx, before: DateTime<Utc>) -> AppResult<u64> {
    let before = clock::fmt(before);
    let gone = ctx
        .exec(stmt!(
            sqlite: "DELETE FROM socket_envelopes WHERE received_at < ?",
            postgres: "DELETE FROM socket_envelopes WHERE received_at < $1::timestamptz",
            [&before],
        ))
        .await?;
    Ok(gone)
}
