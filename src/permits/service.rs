//! Issuing, serving and redeeming permits.
//!
//! A permit is issued in the same write job that makes a request approved
//! (by decision, by a policy `allow`, or by `on_expiry: approve`): the
//! `permit.issued` event carries its claims and `kid`, so issuing is in the
//! hash chain and covered by `audit verify`. The token is not stored; it
//! is rebuilt from that event when asked for (the signature is
//! deterministic, so it is the same token every time).
//!
//! Redeeming marks a permit used, once: the `permit_redemptions` row and
//! the `permit.redeemed` event commit together, and a second redemption is
//! refused with who redeemed it and when.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Claims, Expect, Issuer, PermitKey, PolicyClaim, Refused};
use crate::clock;
use crate::domain::{Principal, Status};
use crate::error::{AppError, AppResult};
use crate::service::App;
use crate::store::WriteCtx;
use crate::store::keys::{ApiKey, Scope};
use crate::store::permits::{self as stored, Redemption};
use crate::store::requests::{self, Approval};

/// Loads (or creates) the permit key and hands the issuer to the store's
/// writer. Called once the listen address is known, since it is the
/// default issuer (`iss`).
pub fn install(app: &App, addr: SocketAddr) -> anyhow::Result<()> {
    let s = &app.settings;
    let key = PermitKey::load_or_create(&s.permit_key)?;
    let iss = match &s.public_url {
        Some(_) => s.permit_issuer(),
        None => format!("http://{addr}"),
    };
    let issuer = Issuer {
        key,
        iss,
        ttl: s.permit_ttl,
    };
    app.store
        .permits
        .set(Arc::new(issuer))
        .map_err(|_| anyhow::anyhow!("the permit issuer was installed twice"))
}

fn issuer(slot: &crate::store::PermitSlot) -> AppResult<&Arc<Issuer>> {
    slot.get().ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!(
            "no permit issuer installed; refusing to approve without one"
        ))
    })
}

/// Issues the permit of a request that has just become approved, inside
/// the job that approved it. Other final states earn nothing.
pub async fn on_final(ctx: &mut WriteCtx, approval: &Approval) -> AppResult<()> {
    if approval.status != Status::Approved {
        return Ok(());
    }
    let issuer = issuer(&ctx.permits)?.clone();
    let iat = ctx.now.timestamp();
    let claims = Claims {
        jti: approval.id.to_string(),
        iss: issuer.iss.clone(),
        sub: approval.requester.to_string(),
        action: approval.action.clone(),
        resource: approval.resource.clone(),
        payload_sha256: approval.payload_sha256.clone(),
        approvers: approval
            .approvals
            .iter()
            .map(|d| d.principal.clone())
            .collect(),
        policy: PolicyClaim {
            rule: approval.policy.rule.clone(),
            version: approval.policy.version.clone(),
        },
        iat,
        exp: iat + issuer.ttl.as_secs() as i64,
    };
    let mut data = serde_json::to_value(&claims).map_err(anyhow::Error::from)?;
    data["kid"] = json!(issuer.key.kid());
    ctx.audit(
        Principal::system(),
        Some((approval.id, &approval.action)),
        "permit.issued",
        &data,
    )
    .await?;
    Ok(())
}

/// The permit of an approved request, for its requester or a `read` key.
pub async fn permit_for(app: &App, key: &ApiKey, id: Uuid) -> AppResult<String> {
    let not_found = || AppError::NotFound(format!("no approval request has id {id}"));
    let a = requests::get(&app.store, id).await?.ok_or_else(not_found)?;
    if a.requester != key.principal && !key.has(Scope::Read) && !key.has(Scope::Admin) {
        return Err(not_found());
    }
    if a.status != Status::Approved {
        return Err(AppError::Conflict(format!(
            "request {id} is {}: a permit is issued only when a request is approved",
            a.status
        )));
    }
    let issuer = issuer(&app.store.permits)?;
    let data = stored::issued_claims(&app.store, id)
        .await?
        .ok_or_else(|| AppError::Conflict(format!("no permit was issued for request {id}")))?;
    let mut data: Value = serde_json::from_str(&data).map_err(anyhow::Error::from)?;
    let kid = data
        .as_object_mut()
        .and_then(|m| m.remove("kid"))
        .and_then(|k| k.as_str().map(str::to_string))
        .unwrap_or_default();
    if kid != issuer.key.kid() {
        return Err(AppError::Conflict(format!(
            "the permit for request {id} was signed with key {kid}, which this server no longer holds; ask again"
        )));
    }
    let claims: Claims = serde_json::from_value(data).map_err(anyhow::Error::from)?;
    // Never hand out a dead permit: a target would refuse it anyway, and
    // the agent learns at once that it must ask again.
    if clock::now().timestamp() >= claims.exp {
        let at = chrono::DateTime::from_timestamp(claims.exp, 0)
            .map(clock::fmt)
            .unwrap_or_default();
        return Err(AppError::Conflict(format!(
            "the permit for request {id} expired at {at}; ask again"
        )));
    }
    Ok(issuer.key.sign(&claims)?)
}

/// A successful redemption.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redeemed {
    pub jti: String,
    /// The principal of the key that redeemed it.
    pub redeemed_by: String,
    pub redeemed_at: String,
    #[schema(value_type = Object)]
    pub claims: Value,
}

/// Why a redemption was refused.
pub enum RedeemError {
    App(AppError),
    AlreadyRedeemed { jti: Uuid, earlier: Redemption },
}

impl From<AppError> for RedeemError {
    fn from(e: AppError) -> Self {
        RedeemError::App(e)
    }
}

/// Marks permit `jti` used, once. `token` must be the permit itself, so
/// only a holder of the permit can spend it; the redeemer is the calling
/// key (a target's own `read` key, or the requester's `request` key).
pub async fn redeem(
    app: &App,
    key: &ApiKey,
    jti: Uuid,
    token: &str,
) -> Result<Redeemed, RedeemError> {
    if ![Scope::Request, Scope::Read, Scope::Admin]
        .iter()
        .any(|s| key.has(*s))
    {
        return Err(AppError::Forbidden(
            "redeeming a permit needs a key with the request or read scope".into(),
        )
        .into());
    }
    let issuer = issuer(&app.store.permits)?;
    let expect = Expect {
        jti: Some(jti.to_string()),
        ..Default::default()
    };
    let claims = super::verify(
        token,
        &[issuer.key.verifying()],
        &expect,
        clock::now().timestamp(),
    )
    .map_err(|r| match r {
        Refused::Expired(_) => AppError::Conflict(format!("permit refused: {r}")),
        other => AppError::Unprocessable(format!("permit refused: {other}")),
    })?;
    let by = key.principal.to_string();
    let key_id = key.id;
    let kid = issuer.key.kid().to_string();
    let outcome = app
        .store
        .write(move |ctx| {
            Box::pin(async move {
                let Some(req) = requests::load_checked(ctx, jti).await? else {
                    return Err(AppError::NotFound(format!("no approval request has id {jti}")));
                };
                // The row must agree with the permit: a request whose state
                // was changed behind the service's back earns nothing.
                if req.status != Status::Approved {
                    return Err(AppError::Conflict(format!(
                        "request {jti} is {}, not approved: its permit cannot be redeemed",
                        req.status
                    )));
                }
                let at = ctx.now_str();
                match stored::redeem(ctx, jti, &by, key_id, &at).await? {
                    Err(earlier) => Ok(Err(earlier)),
                    Ok(()) => {
                        ctx.audit(
                            &by,
                            Some((jti, &req.action)),
                            "permit.redeemed",
                            &json!({ "jti": jti, "by": by, "key_id": key_id, "kid": kid, "redeemed_at": at }),
                        )
                        .await?;
                        Ok(Ok(Redeemed {
                            jti: jti.to_string(),
                            redeemed_by: by,
                            redeemed_at: at,
                            claims: serde_json::to_value(&claims).unwrap_or(Value::Null),
                        }))
                    }
                }
            })
        })
        .await?;
    outcome.map_err(|earlier| RedeemError::AlreadyRedeemed { jti, earlier })
}
