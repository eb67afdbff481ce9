//! What the web console adds to every platform's approval message: a
//! link to the request's console page (only with `COUNTERSIGN_PUBLIC_URL`
//! set: a link to a listen address would open for no one else), and
//! whether the rule is `step_up: console`, so the message says a click
//! there does not decide.

use serde::Serialize;

use crate::error::AppResult;
use crate::service::App;
use crate::store::requests::Approval;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsoleLink {
    pub url: Option<String>,
    pub step_up: bool,
}

impl ConsoleLink {
    pub async fn for_request(app: &App, a: &Approval) -> AppResult<Self> {
        Ok(Self {
            url: app
                .settings
                .public_url
                .is_some()
                .then(|| crate::console::links::request_url(app, &a.id)),
            step_up: crate::store::requests::step_up_of(&app.store, a.id).await?,
        })
    }
}
