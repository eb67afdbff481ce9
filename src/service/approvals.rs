//! Creating, deciding and cancelling requests.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::App;
use crate::clock;
use crate::domain::policy::{ApprovalSpec, Effect, OnExpiry};
use crate::domain::rules::{self, Attempt, PriorDecision, Refusal};
use crate::domain::{PayloadHash, Principal, RequestContent, Status, Verdict};
use crate::error::{AppError, AppResult};
use crate::store::keys::{self, ApiKey};
use crate::store::requests::{self, Approval, NewRow};
use crate::store::{AfterCommit, WriteCtx};

pub struct NewRequest {
    pub content: RequestContent,
    pub expires_in: Option<Duration>,
    pub callback_url: Option<String>,
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request body as sent, to tell a retry from a reuse.
    pub body_hash: String,
}

pub enum Created {
    New(Approval),
    /// The same Idempotency-Key and body as an earlier request.
    Replayed(Approval),
}

pub struct DecisionInput {
    pub request_id: Uuid,
    pub who: Principal,
    pub verdict: Verdict,
    pub comment: Option<String>,
    /// `api`, `slack` or `teams`.
    pub channel: &'static str,
    /// The hash the approver was shown; must match the request's.
    pub payload_sha256: Option<String>,
    /// The resource as re-typed on the console's step-up form.
    pub confirmation: Option<String>,
    /// When the decider signed in with an identity provider (console OIDC sessions).
    pub signed_in_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl App {
    pub async fn create_request(&self, key: &ApiKey, new: NewRequest) -> AppResult<Created> {
        // Every surface builds its content its own way; the rule that decides
        // must be the rule the canonical resource meets, so the check is
        // here too, where they all meet.
        crate::domain::Resource::parse(&new.content.resource).map_err(AppError::Unprocessable)?;
        let policy = self.policy();
        let eval = policy.evaluate(
            new.content.action.as_str(),
            &new.content.resource,
            new.content.risk,
        );
        let rule = eval.rule.to_string();
        let version = eval.version.to_string();
        let effect = eval.effect.clone();
        drop(policy);

        if new.callback_url.is_some() && self.settings.webhook_secret.is_none() {
            return Err(AppError::Unprocessable(
                "callback_url needs the server to have a webhook secret (COUNTERSIGN_WEBHOOK_SECRET); ask the operator or long-poll instead".into(),
            ));
        }
        if let Some(url) = &new.callback_url {
            // Every surface's callback URL is judged here, once (src/net/egress.rs).
            self.settings
                .webhook_destinations
                .vet(url)
                .await
                .map_err(AppError::Unprocessable)?;
        }
        let spec = match &effect {
            Effect::RequireApproval(spec) => Some(spec.clone()),
            _ => None,
        };
        // An agent may ask for a shorter deadline than its rule, never a longer one.
        let expires_in = match (&spec, new.expires_in) {
            (Some(s), Some(asked)) => asked.min(s.expires_in),
            (Some(s), None) => s.expires_in,
            (None, _) => Duration::ZERO,
        };
        let key = key.clone();
        let channels = self.channels.clone();
        self.store
            .write(move |ctx| {
                Box::pin(async move {
                    if let Some(k) = &new.idempotency_key
                        && let Some(existing) = requests::find_idempotent(ctx, &key.principal, k).await?
                    {
                        return if existing.idempotency_hash.as_deref() == Some(new.body_hash.as_str()) {
                            Ok(Created::Replayed(existing))
                        } else {
                            Err(AppError::Conflict(format!(
                                "Idempotency-Key '{k}' was already used for a different request ({}); use a new key for a new request",
                                existing.id
                            )))
                        };
                    }
                    let id = Uuid::now_v7();
                    let now = ctx.now;
                    let now_s = clock::fmt(now);
                    let expires_at = clock::fmt(now + chrono::Duration::from_std(expires_in).unwrap_or_default());
                    let hash = new.content.payload_hash(&key.principal);
                    let (status, decided_by, reason) = match &effect {
                        Effect::Allow => (Status::Approved, Some(format!("policy:{rule}")), Some(format!("allowed by policy rule '{rule}'"))),
                        Effect::Deny => (Status::Denied, Some(format!("policy:{rule}")), Some(format!("denied by policy rule '{rule}'"))),
                        Effect::RequireApproval(_) => (Status::Pending, None, None),
                    };
                    let empty = ApprovalSpec {
                        approvals: 0,
                        approvers: vec![],
                        expires_in: Duration::ZERO,
                        on_expiry: OnExpiry::Deny,
                        slack_channel: None,
                        teams_conversation: None,
                        notify_on_behalf_of: true,
                        remind_every: None,
                        remind_max: 0,
                        escalation: None,
                        step_up: false,
                    };
                    let s = spec.as_ref().unwrap_or(&empty);
                    let approval = requests::insert(
                        ctx,
                        &NewRow {
                            id,
                            content: &new.content,
                            requester: &key.principal,
                            key_id: key.id,
                            key_owner: key.owner.as_ref(),
                            status,
                            policy_rule: &rule,
                            policy_version: &version,
                            required_approvals: s.approvals,
                            approvers: &s.approvers,
                            on_expiry: s.on_expiry,
                            slack_channel: s.slack_channel.as_deref(),
                            teams_conversation: s.teams_conversation.as_deref(),
                            callback_url: new.callback_url.as_deref(),
                            payload_sha256: hash.as_str(),
                            created_at: &now_s,
                            expires_at: &expires_at,
                            decided_at: status.is_final().then_some(now_s.as_str()),
                            decided_by: decided_by.as_deref(),
                            final_reason: reason.as_deref(),
                            idempotency_key: new.idempotency_key.as_deref(),
                            idempotency_hash: new.idempotency_key.as_ref().map(|_| new.body_hash.as_str()),
                        },
                    )
                    .await?;
                    let c = &new.content;
                    let req = Some((id, c.action.as_str()));
                    let actor = key.principal.as_str().to_string();
                    ctx.audit(&actor, req, "request.created", &json!({
                        "action": c.action.as_str(), "resource": c.resource, "summary": c.summary,
                        "justification": c.justification, "details": c.details, "risk": c.risk,
                        "requester": key.principal, "on_behalf_of": c.on_behalf_of, "key_id": key.id,
                        "key_owner": key.owner, "callback_url": new.callback_url, "expires_at": expires_at,
                        "payload_sha256": hash.as_str(), "idempotency_key": new.idempotency_key,
                    }))
                    .await?;
                    let mut evaluated = json!({
                        "rule": rule, "version": version, "effect": effect.name(),
                        "required_approvals": s.approvals, "approvers": s.approvers,
                        "on_expiry": s.on_expiry.as_str(),
                    });
                    // Only step-up rules say so: every other event keeps its shape.
                    if s.step_up {
                        evaluated["step_up"] = json!(rules::STEP_UP_CHANNEL);
                    }
                    ctx.audit(Principal::system(), req, "policy.evaluated", &evaluated).await?;
                    if status.is_final() {
                        ctx.audit(Principal::system(), req, &format!("request.{status}"), &json!({
                            "by": decided_by, "reason": reason,
                        }))
                        .await?;
                        on_final(ctx, &channels, &approval).await?;
                    } else {
                        for ch in channels.iter() {
                            ctx.enqueue(&format!("{ch}.post"), &format!("{ch}:{id}"), Some(id), &json!({ "request_id": id })).await?;
                        }
                        ctx.after_commit(AfterCommit::NewDeadline);
                        // The console's live inbox hears of new requests.
                        ctx.after_commit(AfterCommit::Wake(id));
                    }
                    Ok(Created::New(approval))
                })
            })
            .await
    }

    /// Records one decision through the rules. A refusal is audited and
    /// committed, then returned as `AppError::Refused`. For chat decisions,
    /// which are made with no API key.
    pub async fn decide(&self, input: DecisionInput) -> AppResult<Approval> {
        self.decide_with_key(input, None).await
    }

    /// [`decide`](Self::decide) for a decision made with an API key owned by
    /// `key_owner`: that person decides too, so the rules hold them to the
    /// same conditions as the key's principal.
    pub async fn decide_with_key(
        &self,
        input: DecisionInput,
        key_owner: Option<Principal>,
    ) -> AppResult<Approval> {
        if let Some(c) = &input.comment {
            crate::domain::request::check_text("comment", c, 2000, false)
                .map_err(AppError::Unprocessable)?;
        }
        let channels = self.channels.clone();
        let outcome: Result<Approval, (Refusal, Approval)> = self
            .store
            .write(move |ctx| {
                Box::pin(async move {
                    let id = input.request_id;
                    let Some(req) = requests::load_checked(ctx, id).await? else {
                        return Err(AppError::NotFound(format!("no approval request has id {id}")));
                    };
                    let prior_list = req.prior_principals();
                    let owners = keys::decision_key_owners(ctx, id).await?;
                    let prior: Vec<PriorDecision<'_>> = prior_list
                        .iter()
                        .map(|(p, v)| PriorDecision {
                            principal: p,
                            verdict: *v,
                            key_owner: owners.iter().find(|(d, _)| d == p).map(|(_, o)| o),
                        })
                        .collect();
                    let attempt = Attempt {
                        who: &input.who,
                        key_owner: key_owner.as_ref(),
                        verdict: input.verdict,
                        comment: input.comment.as_deref(),
                        payload_sha256: input.payload_sha256.as_deref(),
                        now: ctx.now,
                        channel: input.channel,
                        confirmation: input.confirmation.as_deref(),
                        signed_in_at: input.signed_in_at,
                    };
                    let facts = req.facts();
                    let verdict = rules::decide(&facts, &prior, &attempt);
                    let reqref = Some((id, req.action.as_str()));
                    let actor = input.who.as_str().to_string();
                    // Whether the decider named the payload they were shown:
                    // chat always does; an API caller may not, and the trail
                    // says so.
                    let bound = input.payload_sha256.is_some();
                    match verdict {
                        Err(refusal) => {
                            // Bad input is not an event; every other refusal is.
                            if refusal == Refusal::CommentRequired {
                                return Err(AppError::Refused(refusal));
                            }
                            let mut blocked = json!({
                                "reason": refusal.code(), "message": refusal.message(),
                                "verdict": input.verdict, "channel": input.channel, "status": req.status,
                                "key_owner": key_owner, "payload_sha256": input.payload_sha256,
                            });
                            if facts.step_up {
                                blocked["step_up"] = json!(rules::STEP_UP_CHANNEL);
                            }
                            ctx.audit(&actor, reqref, "decision.blocked", &blocked).await?;
                            Ok(Err((refusal, req)))
                        }
                        Ok(effect) => {
                            let now = ctx.now_str();
                            requests::insert_decision(ctx, id, &input.who, input.verdict, input.comment.as_deref(), input.channel, &now).await?;
                            if let Some(owner) = &key_owner {
                                keys::record_decision_key_owner(ctx, id, &input.who, owner).await?;
                            }
                            let mut decided = json!({
                                "verdict": input.verdict, "comment": input.comment, "channel": input.channel,
                                "payload_sha256": req.payload_sha256, "bound": bound, "key_owner": key_owner,
                            });
                            if facts.step_up {
                                // The console checked the re-typed resource (rules.rs).
                                decided["step_up"] = json!(rules::STEP_UP_CHANNEL);
                            }
                            ctx.audit(&actor, reqref, &format!("decision.{}", input.verdict.as_str()), &decided).await?;
                            if let Some(status) = effect.final_status() {
                                let reason = match status {
                                    Status::Approved => format!("approved by {} of {} required", req.approvals.len() + 1, req.required_approvals),
                                    _ => format!("denied by {}", input.who),
                                };
                                requests::finalize(ctx, id, status, &now, input.who.as_str(), &reason).await?;
                                ctx.audit(&actor, reqref, &format!("request.{status}"), &json!({ "by": input.who, "reason": reason, "channel": input.channel })).await?;
                            }
                            let after = requests::load(ctx, id).await?.ok_or_else(|| AppError::Internal(anyhow::anyhow!("request vanished")))?;
                            if after.status.is_final() {
                                on_final(ctx, &channels, &after).await?;
                            } else {
                                update_channels(ctx, &channels, id).await?;
                                // What it still needs changed: the console's live pages re-read.
                                ctx.after_commit(AfterCommit::Wake(id));
                            }
                            Ok(Ok(after))
                        }
                    }
                })
            })
            .await?;
        outcome.map_err(|(refusal, _)| AppError::Refused(refusal))
    }

    /// Revokes an API key; see [`revoke_key`].
    pub async fn revoke_key(&self, actor: &str, key_id: &str) -> AppResult<Vec<Uuid>> {
        revoke_key(&self.store, &self.channels, actor, key_id).await
    }

    /// Cancels a pending request; only its requester may.
    pub async fn cancel(&self, key: &ApiKey, id: Uuid) -> AppResult<Approval> {
        let key = key.clone();
        let channels = self.channels.clone();
        self.store
            .write(move |ctx| {
                Box::pin(async move {
                    let Some(req) = requests::load_checked(ctx, id).await? else {
                        return Err(AppError::NotFound(format!(
                            "no approval request has id {id}"
                        )));
                    };
                    // `admin` lets a person cancel anyone's request; an agent
                    // holding it still cancels only its own (admin is for people).
                    let may = req.requester == key.principal
                        || (key.principal.is_human() && key.has(crate::store::keys::Scope::Admin));
                    if !may {
                        return Err(AppError::NotFound(format!(
                            "no approval request has id {id}"
                        )));
                    }
                    if req.status.is_final() {
                        return Err(AppError::Refused(Refusal::AlreadyFinal {
                            status: req.status,
                            decided_by: req.decided_by.clone(),
                            decided_at: req.decided_at.as_deref().and_then(clock::parse),
                        }));
                    }
                    let now = ctx.now_str();
                    let reason = format!("cancelled by {}", key.principal);
                    requests::finalize(
                        ctx,
                        id,
                        Status::Cancelled,
                        &now,
                        key.principal.as_str(),
                        &reason,
                    )
                    .await?;
                    ctx.audit(
                        key.principal.as_str(),
                        Some((id, &req.action)),
                        "request.cancelled",
                        &json!({ "by": key.principal }),
                    )
                    .await?;
                    let after = requests::load(ctx, id)
                        .await?
                        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request vanished")))?;
                    on_final(ctx, &channels, &after).await?;
                    Ok(after)
                })
            })
            .await
    }

    /// Waits up to `wait` for the request to leave `pending`. Subscribes
    /// before each read so a decision between the read and the sleep is
    /// not missed. A pending request is not kept while sleeping (it is read
    /// again at the deadline): a parked waiter holds only its subscription.
    pub async fn wait_for(&self, id: Uuid, wait: Duration) -> AppResult<Option<Approval>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let sub = self.store.waiters.subscribe(id);
            let notified = sub.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Boxed reads keep this future (which a parked waiter holds)
            // small, and the pending request is not held while waiting.
            match Box::pin(requests::get(&self.store, id)).await? {
                Some(a) if a.status == Status::Pending => {}
                other => return Ok(other),
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return Box::pin(requests::get(&self.store, id)).await,
                _ = self.stopping.cancelled() => return Box::pin(requests::get(&self.store, id)).await,
            }
        }
    }
}

/// Revokes an API key and, in the same write, cancels every pending request
/// made with it (each audited `request.cancelled` with reason "key
/// revoked"), through [`on_final`] like any cancellation: chat messages
/// update and the request's callback gets its final `cancelled` webhook, so
/// a waiting agent stops waiting, while nothing the key asked for can be
/// approved any more. Returns the cancelled requests.
///
/// A free function, so the CLI (which has a store and its settings' chat
/// channels, not a running service) revokes exactly as the service would.
pub async fn revoke_key(
    store: &crate::store::Store,
    channels: &[&'static str],
    actor: &str,
    key_id: &str,
) -> AppResult<Vec<Uuid>> {
    let actor = actor.to_string();
    let key_id = key_id.to_string();
    let channels = channels.to_vec();
    store
        .write(move |ctx| {
            Box::pin(async move {
                keys::revoke_in(ctx, &actor, &key_id).await?;
                let ids = keys::pending_requests_of(ctx, &key_id).await?;
                let now = ctx.now_str();
                for &id in &ids {
                    let Some(req) = requests::load_checked(ctx, id).await? else {
                        continue;
                    };
                    requests::finalize(ctx, id, Status::Cancelled, &now, &actor, REVOKED).await?;
                    ctx.audit(
                        &actor,
                        Some((id, &req.action)),
                        "request.cancelled",
                        &json!({ "by": actor, "reason": REVOKED, "key_id": key_id }),
                    )
                    .await?;
                    let after = requests::load(ctx, id)
                        .await?
                        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request vanished")))?;
                    on_final(ctx, &channels, &after).await?;
                }
                Ok(ids)
            })
        })
        .await
}

/// The reason recorded on requests cancelled by their key's revocation.
pub const REVOKED: &str = "key revoked";

/// Queues what a final state sends out: chat updates, the webhook, wake-ups.
pub(crate) async fn on_final(
    ctx: &mut WriteCtx,
    channels: &[&'static str],
    approval: &Approval,
) -> AppResult<()> {
    let id = approval.id;
    if let Some(created) = clock::parse(&approval.created_at) {
        ctx.after_commit(AfterCommit::Final {
            status: approval.status.as_str(),
            created_at: created,
        });
    }
    ctx.after_commit(AfterCommit::Wake(id));
    crate::permits::service::on_final(ctx, approval).await?;
    // Requests decided by policy at once were never posted to chat.
    if approval.required_approvals > 0 {
        update_channels(ctx, channels, id).await?;
        // The human the agent acted for is told the outcome (the channel
        // skips it if the rule opted out or they have no account there).
        if approval.on_behalf_of.is_some() {
            for ch in channels {
                ctx.enqueue(
                    &format!("{ch}.notify"),
                    &format!("{ch}:{id}"),
                    Some(id),
                    &json!({ "request_id": id }),
                )
                .await?;
            }
        }
    }
    if let Some(url) = &approval.callback_url {
        let body = serde_json::to_value(approval).unwrap_or(Value::Null);
        ctx.enqueue(
            crate::webhook::KIND,
            &format!("webhook:{id}"),
            Some(id),
            &json!({ "url": url, "body": body }),
        )
        .await?;
    }
    Ok(())
}

/// Queues an in-place update of every chat message posted for a request.
pub(crate) async fn update_channels(
    ctx: &mut WriteCtx,
    channels: &[&'static str],
    id: Uuid,
) -> AppResult<()> {
    for ch in channels {
        ctx.enqueue(
            &format!("{ch}.update"),
            &format!("{ch}:{id}"),
            Some(id),
            &json!({ "request_id": id }),
        )
        .await?;
    }
    Ok(())
}

pub fn body_hash(body: &[u8]) -> String {
    PayloadHash::of(body).as_str().to_string()
}
