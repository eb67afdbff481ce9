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
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

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
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
