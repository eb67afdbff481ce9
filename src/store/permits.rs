//! Permits as stored: the claims of an issued permit live in its
//! `permit.issued` audit event (the token itself is never stored: Ed25519
//! signatures are deterministic, so it is rebuilt from those claims), and
//! each redemption is one row of `permit_redemptions`.

use uuid::Uuid;

use super::{Store, WriteCtx};
use crate::error::AppResult;

pub(super) const ISSUED_SQLITE: &str = "SELECT data FROM audit_events WHERE request_id = ? AND +kind = 'permit.issued' ORDER BY seq LIMIT 1";

/// The `data` of the `permit.issued` event for a request, if one was issued.
/// Read from the trail, not from a table of its own, so what is served is
/// what the chain holds. `+kind` keeps SQLite on the request's index (a
/// request has a handful of events); on the kind's it would read every
/// permit ever issued.
pub async fn issued_claims(store: &Store, request_id: Uuid) -> AppResult<Option<String>> {
    Ok(on!(store.db(),
        sqlite: ISSUED_SQLITE,
        postgres: "SELECT data FROM audit_events WHERE request_id = $1 AND kind = 'permit.issued' ORDER BY seq LIMIT 1",
        |sql, e| sqlx::query_scalar::<_, String>(sql)
            .bind(request_id.to_string())
            .fetch_optional(e)
            .await?))
}

/// Who redeemed a permit, and when.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Redemption {
    pub redeemed_by: String,
    pub redeemed_at: String,
}

sqlite_row!(Redemption {
    redeemed_by,
    redeemed_at
});

/// Records the redemption of permit `jti` unless it was redeemed before,
/// in which case the earlier redemption is returned and nothing is written.
/// Runs inside the writer's transaction, so check and insert are atomic.
pub async fn redeem(
    ctx: &mut WriteCtx,
    jti: Uuid,
    by: &str,
    key_id: Uuid,
    at: &str,
) -> AppResult<Result<(), Redemption>> {
    let inserted = ctx.exec(stmt!(
        sqlite: "INSERT INTO permit_redemptions (jti, redeemed_by, key_id, redeemed_at) VALUES (?, ?, ?, ?) \
            ON CONFLICT (jti) DO NOTHING",
        postgres: "INSERT INTO permit_redemptions (jti, redeemed_by, key_id, redeemed_at) \
            VALUES ($1::uuid, $2, $3::uuid, $4::timestamptz) ON CONFLICT (jti) DO NOTHING",
        [jti.to_string(), by, key_id.to_string(), at],
    ))
        .await?;
    if inserted == 1 {
        return Ok(Ok(()));
    }
    let earlier = ctx.one::<Redemption>(stmt!(
        sqlite: "SELECT redeemed_by, redeemed_at FROM permit_redemptions WHERE jti = ?",
        postgres: "SELECT redeemed_by, cs_ts(redeemed_at) AS redeemed_at FROM permit_redemptions WHERE jti = $1::uuid",
        [jti.to_string()],
    ))
    .await?;
    Ok(Err(earlier))
}
