//! `Authorization: Bearer <token>` → the calling key's principal and scopes.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::error::AppError;
use crate::service::App;
use crate::store::keys::{self, ApiKey};

pub struct Authed(pub ApiKey);

impl FromRequestParts<App> for Authed {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            AppError::Unauthorized("send an API key as Authorization: Bearer <token>".into())
        })?;
        let value = header.to_str().map_err(|_| {
            AppError::Unauthorized("the Authorization header is not valid text".into())
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                AppError::Unauthorized("the Authorization header must be 'Bearer <token>'".into())
            })?;
        // Boxed: the database read's future is large, and an extractor's
        // future is part of every handler's; a long-poll would carry it
        // for as long as it waits.
        Box::pin(keys::authenticate(&app.store, token.trim()))
            .await
            .map(Authed)
    }
}
