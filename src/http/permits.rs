//! Permits over HTTP: fetch an approved request's permit, publish the
//! public keys that verify it, and redeem it once at the target.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Authed;
use super::extract::ApiJson;
use crate::error::{AppError, AppResult};
use crate::permits::service::{self, RedeemError, Redeemed};
use crate::service::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/approvals/{id}/permit", get(show))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/permits/{jti}/redeem", post(redeem))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PermitBody {
    /// A compact JWS (EdDSA); verify it with `/.well-known/jwks.json`.
    pub permit: String,
}

fn parse_id(id: &str) -> AppResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| AppError::NotFound(format!("no approval request has id {id}")))
}

/// The permit of an approved request (its requester, or a `read` key).
#[utoipa::path(get, path = "/v1/approvals/{id}/permit", tag = "permits",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = PermitBody),
        (status = 401, content_type = "application/problem+json"),
        (status = 404, description = "No such request (or not yours)", content_type = "application/problem+json"),
        (status = 409, description = "Not approved (the detail names the status), or the permit expired", content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn show(
    State(app): State<App>,
    Authed(key): Authed,
    Path(id): Path<String>,
) -> AppResult<Json<PermitBody>> {
    let id = parse_id(&id)?;
    let permit = service::permit_for(&app, &key, id).await?;
    Ok(Json(PermitBody { permit }))
}

/// The permit public keys (OKP, Ed25519), for verifying permits offline.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "permits",
    responses((status = 200, description = "A JWKS", body = Object)))]
pub async fn jwks(State(app): State<App>) -> AppResult<Response> {
    let issuer = app
        .store
        .permits
        .get()
        .ok_or_else(|| AppError::Unavailable("the permit key is not loaded yet".into()))?;
    let mut res = Json(issuer.key.jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(res)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    /// The permit being spent: a compact JWS (three base64url parts).
    #[schema(
        min_length = 5,
        max_length = 8192,
        pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
    )]
    pub permit: String,
}

/// Marks a permit used, once (a key with the `request` or `read` scope).
#[utoipa::path(post, path = "/v1/permits/{jti}/redeem", tag = "permits",
    params(("jti" = Uuid, Path)), request_body = RedeemBody,
    responses(
        (status = 200, body = Redeemed),
        (status = 400, description = "Not JSON, or a duplicate key", content_type = "application/problem+json"),
        (status = 401, content_type = "application/problem+json"),
        (status = 403, description = "The key has neither the request nor the read scope", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "Already redeemed (with `redeemed_by` and `redeemed_at`), expired, or the request is not approved", content_type = "application/problem+json"),
        (status = 413, description = "Body too large", content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", content_type = "application/problem+json"),
        (status = 422, description = "Not a permit of this server for this jti", content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn redeem(
    State(app): State<App>,
    Authed(key): Authed,
    Path(jti): Path<String>,
    body: ApiJson<RedeemBody>,
) -> Result<Json<Redeemed>, Response> {
    let jti = Uuid::parse_str(&jti)
        .map_err(|_| AppError::NotFound(format!("no permit has jti {jti}")).into_response())?;
    match service::redeem(&app, &key, jti, &body.value.permit).await {
        Ok(r) => Ok(Json(r)),
        Err(RedeemError::App(e)) => Err(e.into_response()),
        Err(RedeemError::AlreadyRedeemed { jti, earlier }) => {
            let mut problem: Value = AppError::Conflict(format!(
                "permit {jti} was already redeemed by {} at {}",
                earlier.redeemed_by, earlier.redeemed_at
            ))
            .problem();
            problem["redeemed_by"] = json!(earlier.redeemed_by);
            problem["redeemed_at"] = json!(earlier.redeemed_at);
            let mut res = (StatusCode::CONFLICT, problem.to_string()).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            Err(res)
        }
    }
}
