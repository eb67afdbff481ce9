//! The audit API: query, export and verify the trail (`audit` scope).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Authed;
use super::extract::ApiQuery;
use crate::clock;
use crate::error::{AppError, AppResult};
use crate::service::App;
use crate::store::keys::Scope;
use crate::store::trail::{self, AuditEventView, AuditFilter, ExportFormat};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/audit", get(query))
        .route("/v1/audit/export", get(export))
        .route("/v1/audit/verify", get(verify))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// A request id.
    pub request: Option<String>,
    /// A principal, e.g. `user:alice@example.com`.
    pub actor: Option<String>,
    /// The request's action; globs allowed (`db.*`).
    pub action: Option<String>,
    /// An event kind (`decision.approve`) or a prefix ending in `.` (`decision.`).
    pub kind: Option<String>,
    /// `24h`, `7d`, `2026-01-31` or an RFC 3339 time.
    pub since: Option<String>,
    pub until: Option<String>,
    /// 1–500, default 100; outside that range is a 400.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<i64>,
}

impl AuditParams {
    pub fn into_filter(self) -> AppResult<AuditFilter> {
        let now = clock::now();
        let limit = self.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(AppError::BadRequest(
                "limit must be between 1 and 500".into(),
            ));
        }
        Ok(AuditFilter {
            request_id: self
                .request
                .as_deref()
                .map(|r| {
                    Uuid::parse_str(r).map_err(|_| {
                        AppError::BadRequest(format!("request '{r}' is not a request id"))
                    })
                })
                .transpose()?,
            actor: self.actor,
            action: self.action,
            kind: self.kind,
            since: self
                .since
                .as_deref()
                .map(|s| clock::parse_since(s, now))
                .transpose()
                .map_err(AppError::BadRequest)?,
            until: self
                .until
                .as_deref()
                .map(|s| clock::parse_since(s, now))
                .transpose()
                .map_err(AppError::BadRequest)?,
            before: self.cursor,
            limit,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEventView>,
    pub next_cursor: Option<i64>,
}

/// Queries the trail, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, content_type = "application/problem+json"),
        (status = 401, content_type = "application/problem+json"), (status = 403, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn query(
    State(app): State<App>,
    Authed(key): Authed,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> AppResult<Json<AuditPage>> {
    key.require(Scope::Audit)?;
    let filter = p.into_filter()?;
    let events = trail::query(&app.store, &filter).await?;
    let next_cursor = (events.len() == filter.limit as usize)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        events: events.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `ndjson` (default) or `csv`.
    pub format: Option<ExportFormat>,
}

/// Streams the whole trail, oldest first, with hashes and head signatures;
/// `countersign audit verify --file` checks it offline.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportParams),
    responses((status = 200, description = "NDJSON (default) or CSV stream", content(
            (String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 400, description = "Unknown format", content_type = "application/problem+json"),
        (status = 401, content_type = "application/problem+json"), (status = 403, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn export(
    State(app): State<App>,
    Authed(key): Authed,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> AppResult<Response> {
    key.require(Scope::Audit)?;
    Ok(export_response(
        &app,
        p.format.unwrap_or(ExportFormat::Ndjson),
    ))
}

/// The whole trail as a download, streamed as it is read (the API's
/// export and the console's download buttons).
pub fn export_response(app: &App, format: ExportFormat) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let store = app.store.clone();
    tokio::spawn(async move {
        let err_tx = tx.clone();
        if let Err(e) = trail::export_store(&store, format, tx).await {
            tracing::error!(error = %e, "audit export failed midway");
            let _ = err_tx
                .send(Err(std::io::Error::other("export failed")))
                .await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let (ctype, ext) = match format {
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    (
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"countersign-audit.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Recomputes the chain and checks its signatures with the service's key.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = crate::service::audit_query::VerifyResult), (status = 401, content_type = "application/problem+json"), (status = 403, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn verify(
    State(app): State<App>,
    Authed(key): Authed,
) -> AppResult<Json<crate::service::audit_query::VerifyResult>> {
    key.require(Scope::Audit)?;
    Ok(Json(app.verify_trail().await?))
}
