//! The agent API: create, read, long-poll, list, decide and cancel.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Authed;
use super::extract::{ApiJson, ApiQuery};
use crate::domain::request::{MAX_EXPIRY, MIN_EXPIRY, check_text, parse_duration};
use crate::domain::{Action, Principal, RequestContent, Resource, Risk, Status, Verdict};
use crate::error::{AppError, AppResult};
use crate::service::App;
use crate::service::approvals::{Created, DecisionInput, NewRequest, body_hash};
use crate::store::keys::{ApiKey, Scope};
use crate::store::requests::{self, Approval, ListFilter};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/approvals", post(create).get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/decisions", post(decide))
        .route("/v1/approvals/{id}/cancel", post(cancel))
}

/// A new approval request. The requester is the API key's principal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApproval {
    /// What the agent wants to do, e.g. `db.export`.
    #[schema(example = "db.export", pattern = r"^[A-Za-z0-9._:/-]{1,128}$")]
    pub action: String,
    /// What it acts on, e.g. `prod/customers`.
    #[schema(
        example = "prod/customers",
        max_length = 512,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub resource: String,
    /// One line for the approver.
    #[schema(
        example = "Export the customers table for the quarterly audit",
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub summary: String,
    #[schema(
        max_length = 4000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub justification: Option<String>,
    /// Key/value facts shown to approvers (at most 50 keys, 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// Defaults to `medium`.
    pub risk: Option<Risk>,
    /// The human the agent acts for; they may not approve.
    #[schema(example = "user:alice@example.com")]
    pub on_behalf_of: Option<String>,
    /// Shorter than the policy rule's expiry, e.g. `30m`; never longer.
    #[schema(example = "30m")]
    pub expires_in: Option<String>,
    /// Receives a signed POST when the request reaches a final state
    /// (http or https, at most 2048 characters).
    #[schema(
        format = "uri",
        max_length = 2048,
        pattern = r"^[hH][tT][tT][pP][sS]?://"
    )]
    pub callback_url: Option<String>,
}

const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// The body of `POST /v1/approvals` read and validated exactly as `create`
/// does, with no key or database: the fuzz targets (`fuzz/`) call it.
pub fn parse_create_body(
    raw: &[u8],
) -> AppResult<(RequestContent, Option<Duration>, Option<String>)> {
    super::extract::parse_json::<CreateApproval>(raw)?.parse()
}

impl CreateApproval {
    pub(crate) fn parse(self) -> AppResult<(RequestContent, Option<Duration>, Option<String>)> {
        let bad = AppError::Unprocessable;
        let action = Action::parse(&self.action).map_err(bad)?;
        let resource = Resource::parse(&self.resource).map_err(bad)?;
        check_text("summary", &self.summary, 1000, true).map_err(bad)?;
        if let Some(j) = &self.justification {
            check_text("justification", j, 4000, false).map_err(bad)?;
        }
        let details = self.details.unwrap_or_default();
        if details.len() > 50
            || serde_json::to_vec(&details).map(|v| v.len()).unwrap_or(0) > MAX_DETAILS_BYTES
        {
            return Err(bad(format!(
                "details may hold at most 50 keys and {MAX_DETAILS_BYTES} bytes"
            )));
        }
        let on_behalf_of = match self.on_behalf_of {
            Some(p) => {
                let p = Principal::parse(&p).map_err(|e| bad(format!("on_behalf_of: {e}")))?;
                if !p.is_human() {
                    return Err(bad(
                        "on_behalf_of must be a user: principal, the human the agent acts for"
                            .into(),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        let expires_in = match self.expires_in {
            Some(s) => {
                let d = parse_duration(&s).map_err(|e| bad(format!("expires_in: {e}")))?;
                if !(MIN_EXPIRY..=MAX_EXPIRY).contains(&d) {
                    return Err(bad("expires_in must be between 1s and 30d".into()));
                }
                Some(d)
            }
            None => None,
        };
        if let Some(u) = &self.callback_url {
            let url =
                url::Url::parse(u).map_err(|e| bad(format!("callback_url is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(bad("callback_url must be an http or https URL".into()));
            }
            if u.len() > 2048 {
                return Err(bad("callback_url is longer than 2048 characters".into()));
            }
        }
        let content = RequestContent {
            action,
            resource: resource.into_string(),
            summary: self.summary,
            justification: self.justification,
            details,
            risk: self.risk.unwrap_or(Risk::Medium),
            on_behalf_of,
        };
        Ok((content, expires_in, self.callback_url))
    }
}

/// Creates a request and applies the policy. `allow` and `deny` rules
/// answer with a final status at once; both are audited.
#[utoipa::path(post, path = "/v1/approvals", tag = "approvals",
    request_body = CreateApproval,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$",
        description = "1 to 255 printable ASCII characters, no leading or trailing space. Same key and body: the same request (200). Same key, other body: 409.")),
    responses(
        (status = 201, description = "Created and committed", body = Approval),
        (status = 200, description = "Replay of an earlier request with the same Idempotency-Key", body = Approval),
        (status = 400, description = "Not JSON, a duplicate key, or a malformed Idempotency-Key", content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the request scope", content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with another body", content_type = "application/problem+json"),
        (status = 413, description = "Body too large", content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", content_type = "application/problem+json"),
        (status = 422, description = "Missing, unknown or invalid fields, or an action or resource not in canonical form", content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<App>,
    Authed(key): Authed,
    headers: HeaderMap,
    body: ApiJson<CreateApproval>,
) -> AppResult<Response> {
    key.require(Scope::Request)?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| AppError::BadRequest("Idempotency-Key must be text".into()))?
                .trim();
            // As documented: printable ASCII (no tabs or other controls).
            if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return Err(AppError::BadRequest(
                    "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
                ));
            }
            Some(k.to_string())
        }
    };
    // The parsed body, re-encoded canonically: the same JSON with other
    // spacing or key order is the same request; numbers keep their exact
    // spelling (crate::json), so `1e0` and `1` are different bodies.
    let canonical =
        crate::json::parse_strict(&body.raw).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let body_hash = body_hash(canonical.to_string().as_bytes());
    let (content, expires_in, callback_url) = body.value.parse()?;
    let created = app
        .create_request(
            &key,
            NewRequest {
                content,
                expires_in,
                callback_url,
                idempotency_key,
                body_hash,
            },
        )
        .await?;
    Ok(match created {
        Created::New(a) => {
            let location = format!("/v1/approvals/{}", a.id);
            (StatusCode::CREATED, [(header::LOCATION, location)], Json(a)).into_response()
        }
        Created::Replayed(a) => (StatusCode::OK, Json(a)).into_response(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ShowParams {
    /// Seconds to wait for the request to leave `pending`: 0 to the
    /// server's `max_wait` (60 by default, never more); above it is a 400.
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<u64>,
}

fn parse_id(id: &str) -> AppResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| AppError::NotFound(format!("no approval request has id {id}")))
}

/// Keys with only the `request` scope see only their own requests.
pub(crate) fn can_see(key: &ApiKey, a: &Approval) -> bool {
    key.has(Scope::Read)
        || key.has(Scope::Decide)
        || key.has(Scope::Audit)
        || a.requester == key.principal
}

fn require_any_read(key: &ApiKey) -> AppResult<()> {
    if [Scope::Request, Scope::Read, Scope::Decide, Scope::Audit]
        .iter()
        .any(|s| key.has(*s))
    {
        Ok(())
    } else {
        key.require(Scope::Read)
    }
}

/// Reads a request; with `?wait=N` answers the moment it leaves `pending`,
/// or after N seconds with its pending state.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals",
    params(("id" = Uuid, Path), ShowParams),
    responses(
        (status = 200, body = Approval),
        (status = 400, description = "Bad wait value", content_type = "application/problem+json"),
        (status = 401, content_type = "application/problem+json"),
        (status = 404, description = "No such request (or not yours)", content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn show(
    State(app): State<App>,
    Authed(key): Authed,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ShowParams>,
) -> AppResult<Json<Approval>> {
    require_any_read(&key)?;
    let id = parse_id(&id)?;
    let max = app.settings.max_wait.as_secs();
    let wait = params.wait.unwrap_or(0);
    if wait > max {
        return Err(AppError::BadRequest(format!(
            "wait may be at most {max} seconds"
        )));
    }
    let not_found = || AppError::NotFound(format!("no approval request has id {id}"));
    // Check visibility before waiting, so nobody can wait on others' requests.
    let current = Box::pin(requests::get(&app.store, id))
        .await?
        .ok_or_else(not_found)?;
    if !can_see(&key, &current) {
        return Err(not_found());
    }
    if wait == 0 || current.status != Status::Pending {
        return Ok(Json(current));
    }
    // Not held while waiting: with thousands of agents parked here, every
    // byte kept per waiter counts.
    drop(current);
    let a = app
        .wait_for(id, Duration::from_secs(wait))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(a))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[param(value_type = Option<Status>)]
    pub status: Option<String>,
    /// Glob on the action, e.g. `db.*`.
    pub action: Option<String>,
    pub requester: Option<String>,
    /// 1–200, default 50; outside that range is a 400.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalPage {
    pub items: Vec<Approval>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Lists requests, newest first.
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ListParams),
    responses((status = 200, body = ApprovalPage), (status = 400, content_type = "application/problem+json"), (status = 401, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<App>,
    Authed(key): Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> AppResult<Json<ApprovalPage>> {
    require_any_read(&key)?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 200".into(),
        ));
    }
    let filter = ListFilter {
        status: p
            .status
            .as_deref()
            .map(Status::parse)
            .transpose()
            .map_err(AppError::BadRequest)?,
        action: p.action,
        requester: p
            .requester
            .as_deref()
            .map(Principal::parse)
            .transpose()
            .map_err(AppError::BadRequest)?
            .map(|p| p.to_string()),
        visible_to: (!(key.has(Scope::Read) || key.has(Scope::Decide) || key.has(Scope::Audit)))
            .then(|| key.principal.to_string()),
        before: p
            .cursor
            .as_deref()
            .map(|c| {
                Uuid::parse_str(c)
                    .map_err(|_| AppError::BadRequest("cursor is not one this server gave".into()))
            })
            .transpose()?,
        limit,
    };
    let items = requests::list(&app.store, &filter).await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Json(ApprovalPage { items, next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub verdict: Verdict,
    /// Required for a denial.
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub comment: Option<String>,
    /// The payload hash you were shown; refused if the request's differs.
    /// Without it the decision is recorded as unbound (`"bound": false`).
    pub payload_sha256: Option<String>,
}

/// A human decides through the API (a key with the `decide` scope).
#[utoipa::path(post, path = "/v1/approvals/{id}/decisions", tag = "approvals",
    params(("id" = Uuid, Path)), request_body = DecisionBody,
    responses(
        (status = 200, description = "Recorded; the request as it now stands", body = Approval),
        (status = 400, description = "Not JSON, or a duplicate key", content_type = "application/problem+json"),
        (status = 401, content_type = "application/problem+json"),
        (status = 403, description = "Self-approval (also through the deciding key's owner), not an approver, not a person, or no decide scope", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "Already final (says who decided and when), expired at commit time, payload_sha256 mismatch, or a person already counted (you, or your key's owner)", content_type = "application/problem+json"),
        (status = 413, description = "Body too large", content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", content_type = "application/problem+json"),
        (status = 422, description = "A denial without a comment, or invalid fields", content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn decide(
    State(app): State<App>,
    Authed(key): Authed,
    Path(id): Path<String>,
    body: ApiJson<DecisionBody>,
) -> AppResult<Json<Approval>> {
    key.require(Scope::Decide)?;
    let id = parse_id(&id)?;
    let b = body.value;
    let a = app
        .decide_with_key(
            DecisionInput {
                request_id: id,
                who: key.principal.clone(),
                verdict: b.verdict,
                comment: b.comment,
                channel: "api",
                payload_sha256: b.payload_sha256,
                confirmation: None,
                signed_in_at: None,
            },
            key.owner.clone(),
        )
        .await?;
    Ok(Json(a))
}

/// The requester withdraws a pending request. A person's `admin` key may
/// cancel anyone's; an agent's `admin` key only its own (others' are 404).
#[utoipa::path(post, path = "/v1/approvals/{id}/cancel", tag = "approvals", params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Approval),
        (status = 401, content_type = "application/problem+json"),
        (status = 403, content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "Already final", content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    State(app): State<App>,
    Authed(key): Authed,
    Path(id): Path<String>,
) -> AppResult<Json<Approval>> {
    key.require(Scope::Request)?;
    let id = parse_id(&id)?;
    Ok(Json(app.cancel(&key, id).await?))
}
