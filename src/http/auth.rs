//! `Authorization: Bearer <token>` → the calling key's principal and scopes.
//!
//! Every authenticated surface extracts [`Authed`], so the rate limits
//! ([`crate::net::rate_limit`]) are applied here, once: per key after a
//! successful lookup, per source address for failures (and, once an address
//! is over its failure limit, before any lookup).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use crate::error::AppError;
use crate::net::rate_limit::{RateLimits, retry_after_secs};
use crate::service::App;
use crate::store::keys::{self, ApiKey};

pub struct Authed(pub ApiKey);

fn too_many(wait: Duration, what: &str) -> AppError {
    let secs = retry_after_secs(wait);
    AppError::TooManyRequests {
        detail: format!("{what}; retry after {secs} s"),
        retry_after: secs,
    }
}

impl FromRequestParts<App> for Authed {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let limits = parts.extensions.get::<Arc<RateLimits>>().cloned();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let failures = limits.as_ref().zip(peer);
        if let Some((l, ip)) = failures {
            l.barred(ip)
                .map_err(|w| too_many(w, "too many failed authentications from this address"))?;
        }
        let key = match authenticate(parts, app).await {
            Ok(key) => key,
            Err(e) => {
                if let (AppError::Unauthorized(_), Some((l, ip))) = (&e, failures) {
                    l.failed(ip).map_err(|w| {
                        too_many(w, "too many failed authentications from this address")
                    })?;
                }
                return Err(e);
            }
        };
        if let Some(l) = &limits {
            l.check_key(key.id)
                .map_err(|w| too_many(w, "this API key is over its request rate"))?;
        }
        Ok(Authed(key))
    }
}

async fn authenticate(parts: &Parts, app: &App) -> Result<ApiKey, AppError> {
    let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        AppError::Unauthorized("send an API key as Authorization: Bearer <token>".into())
    })?;
    let value = header
        .to_str()
        .map_err(|_| AppError::Unauthorized("the Authorization header is not valid text".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            AppError::Unauthorized("the Authorization header must be 'Bearer <token>'".into())
        })?;
    // Boxed: the database read's future is large, and an extractor's
    // future is part of every handler's; a long-poll would carry it
    // for as long as it waits.
    Box::pin(keys::authenticate(&app.store, token.trim())).await
}
