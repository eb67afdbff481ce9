//! Extractors whose rejections are problem documents with precise codes:
//! 400 for JSON that does not parse, 422 for JSON of the wrong shape
//! (missing, unknown or mistyped fields), 413 for too large, 415 for not
//! JSON. Every body goes through `crate::json`'s strict parser, so
//! duplicate keys are refused and numbers are kept exactly.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::json::StrictDecodeError;

/// A JSON body, with the raw bytes kept (idempotency compares them).
pub struct ApiJson<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let v = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(AppError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ));
        }
        let raw = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge(
                    "the request body is larger than this server accepts".into(),
                )
            } else {
                AppError::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;
        let value = parse_json(&raw)?;
        Ok(Self { value, raw })
    }
}

/// Reads a JSON body through the one strict parser (`crate::json`):
/// duplicate keys and bad syntax are 400, a wrong shape is 422 naming the
/// field.
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, AppError> {
    crate::json::from_slice_strict(raw).map_err(|e| match e {
        StrictDecodeError::Json(e) => AppError::BadRequest(e.to_string()),
        StrictDecodeError::Shape { path, message } if path == "." => {
            AppError::Unprocessable(format!("the JSON body does not fit: {message}"))
        }
        StrictDecodeError::Shape { path, message } => {
            AppError::Unprocessable(format!("field `{path}`: {message}"))
        }
    })
}

/// Query parameters; a bad one is a 400 that names it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_compat(q).map(ApiQuery)
    }
}

fn serde_urlencoded_compat<T: DeserializeOwned>(q: &str) -> Result<T, AppError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| AppError::BadRequest("bad query string".into()))?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| AppError::BadRequest(format!("bad query parameter: {}", e.body_text())))
}
