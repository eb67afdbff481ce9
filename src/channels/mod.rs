//! Chat channels. Each enabled channel gets a `<name>.post` and a
//! `<name>.update` outbox handler and its own HTTP routes; all of them
//! record decisions through `App::decide`, never on their own.

use axum::Router;

use crate::config::Settings;
use crate::outbox::Outbox;
use crate::service::App;

/// The channels that receive a message for each request needing approval.
pub fn enabled(_settings: &Settings) -> Vec<&'static str> {
    vec![]
}

/// Registers each enabled channel's outbox handlers and returns its routes.
pub async fn install(_app: &App, _outbox: &mut Outbox) -> anyhow::Result<Vec<Router<App>>> {
    Ok(vec![])
}
