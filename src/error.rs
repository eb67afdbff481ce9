//! One error type for the whole service. Handlers use `?`; each variant maps
//! to one status code and an `application/problem+json` body (RFC 9457) with
//! a message a person can act on. Internal errors are logged, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::rules::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{}", .0.message())]
    Refused(Refusal),
    #[error("{0}")]
    Unavailable(String),
    /// Over a rate limit; answered with `Retry-After: <secs>`.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// A stored row disagrees with the audit events it was derived from:
    /// the file was edited behind the service's back. Served as 409 (the
    /// state conflicts with the trail), never acted on.
    #[error(
        "request {request_id} disagrees with its audit trail ({}): it is neither served nor acted on; run `countersign audit verify`",
        fields.join(", ")
    )]
    Integrity {
        request_id: String,
        fields: Vec<String>,
    },
    #[error("database error: {0}")]
    Sqlx(sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

/// What a caller hears while the database cannot be reached.
pub const DB_UNAVAILABLE: &str =
    "the database is unreachable; nothing was changed, try again shortly";

/// Seconds a 503 asks the caller to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

/// Whether `e` says the database could not be reached (the server is down
/// or restarting, the network dropped, every connection is busy), rather
/// than that a statement was wrong: the first is a 503 the caller may
/// retry, the second a 500.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // 08: connection exception; 57P01-03: the server is shutting
            // down or starting; 53300: too many connections; 40001/40P01
            // are not here (a retry inside the service handles neither).
            c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            tracing::warn!(error = %e, "the database is unreachable");
            AppError::Unavailable(DB_UNAVAILABLE.into())
        } else {
            AppError::Sqlx(e)
        }
    }
}

/// SQLite's writer runs on rusqlite (`store::stmt`). A lock another
/// process held past the busy timeout is a 503 the caller may retry;
/// anything else is a 500 whose text stays in the log.
impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => {
                tracing::warn!(error = %e, "the database stayed locked");
                AppError::Unavailable(DB_UNAVAILABLE.into())
            }
            _ => AppError::Internal(anyhow::anyhow!("database error: {e}")),
        }
    }
}

impl AppError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Refused(r) => match r {
                Refusal::AlreadyFinal { .. }
                | Refusal::AlreadyApproved
                | Refusal::SamePerson { .. }
                | Refusal::Expired { .. }
                | Refusal::PayloadMismatch { .. } => StatusCode::CONFLICT,
                Refusal::CommentRequired => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::FORBIDDEN,
            },
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Integrity { .. } => StatusCode::CONFLICT,
            AppError::Sqlx(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad-request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not-found",
            AppError::Conflict(_) => "conflict",
            AppError::PayloadTooLarge(_) => "payload-too-large",
            AppError::UnsupportedMediaType(_) => "unsupported-media-type",
            AppError::Unprocessable(_) => "invalid-input",
            AppError::Refused(r) => r.code(),
            AppError::Unavailable(_) => "unavailable",
            AppError::TooManyRequests { .. } => "rate-limited",
            AppError::Integrity { .. } => "integrity",
            AppError::Sqlx(_) | AppError::Internal(_) => "internal",
        }
    }

    /// The problem document, also used by the CLI and chat channels.
    pub fn problem(&self) -> Value {
        let status = self.status_code();
        let detail = match self {
            AppError::Sqlx(_) | AppError::Internal(_) => {
                "An internal error occurred; it has been logged.".to_string()
            }
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("urn:countersign:problem:{}", self.code()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        if let AppError::Refused(Refusal::AlreadyFinal {
            status,
            decided_by,
            decided_at,
        }) = self
        {
            body["request_status"] = json!(status);
            body["decided_by"] = json!(decided_by);
            body["decided_at"] = json!(decided_at.map(crate::clock::fmt));
        }
        if let AppError::Integrity { request_id, fields } = self {
            body["request_id"] = json!(request_id);
            body["fields"] = json!(fields);
        }
        body
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut res = (status, self.problem().to_string()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let AppError::TooManyRequests { retry_after, .. } = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if let AppError::Unavailable(_) = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
