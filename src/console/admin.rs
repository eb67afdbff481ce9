//! The admin page, read-only: API keys (never their tokens: only the
//! prefix the store keeps) and the operator's identity links. For the
//! policy's auditors and sessions opened with an `admin` key.

use axum::extract::State;
use axum::response::Response;
use minijinja::{Value, context};

use super::error::{ConsoleError, ConsoleResult};
use super::session::Signed;
use super::{html, templates};
use crate::service::App;
use crate::store::{identities, keys};

pub async fn page(State(app): State<App>, signed: Signed) -> ConsoleResult<Response> {
    if !signed.may_admin(&app) {
        return Err(ConsoleError::Forbidden(
            "Only administrators and auditors may see keys and identity links.".into(),
        ));
    }
    let keys = keys::list(&app.store).await?;
    let links = identities::list(&app.store).await?;
    Ok(html(templates::render(
        "admin.html",
        context! { title => "Keys and identity links", keys => Value::from(minijinja::value::Serde(&keys)), links => Value::from(minijinja::value::Serde(&links)), ..super::request::chrome(&app, &signed) },
    )))
}
