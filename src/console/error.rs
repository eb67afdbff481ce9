//! What a console page answers when it cannot show what was asked: an
//! HTML page with the reason (never a JSON problem), or a redirect to
//! sign in. Internal errors are logged and shown as a sentence.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use crate::error::AppError;

#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: sign in, then come back to `next`.
    SignIn {
        next: String,
    },
    /// A GET arriving from another site (a chat message's link) without
    /// the cookie, which `SameSite=Strict` withholds from such a
    /// navigation: a page of ours opens the same URL again, now as a
    /// same-site navigation that carries it (or, signed out, signs in).
    Renavigate {
        to: String,
    },
    /// No session on a state-changing request, or a missing or wrong CSRF token.
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    /// A one-time link already used or expired.
    Gone(String),
    /// Too many failed sign-ins from this address (the API's limit).
    TooMany(String),
    App(AppError),
}

pub type ConsoleResult<T> = Result<T, ConsoleError>;

impl From<AppError> for ConsoleError {
    fn from(e: AppError) -> Self {
        ConsoleError::App(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, text) = match self {
            ConsoleError::SignIn { next } => {
                let to = format!("/ui/login?next={}", urlencoding::encode(&next));
                return Redirect::to(&to).into_response();
            }
            ConsoleError::Renavigate { to } => {
                let page = super::templates::render(
                    "moving_on.html",
                    context! { title => "Opening", next => super::safe_next(Some(&to)) },
                );
                return super::html(page);
            }
            ConsoleError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            ConsoleError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            ConsoleError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            ConsoleError::Gone(m) => (StatusCode::GONE, "Link not valid", m),
            ConsoleError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "Slow down", m),
            ConsoleError::App(e) => match e {
                AppError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
                AppError::BadRequest(m) | AppError::Unprocessable(m) => {
                    (StatusCode::BAD_REQUEST, "Bad request", m)
                }
                AppError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
                AppError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", m),
                other => {
                    tracing::error!(error = %format!("{other:#}"), "a console page failed");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong",
                        "Countersign could not show this page; the error has been logged.".into(),
                    )
                }
            },
        };
        let page = super::templates::render(
            "message.html",
            context! { title => title, text => text, who => () },
        );
        (status, super::html(page)).into_response()
    }
}
