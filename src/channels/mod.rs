//! Chat channels. Each enabled channel gets a `<name>.post` and a
//! `<name>.update` outbox handler and its own HTTP routes; all of them
//! record decisions through `App::decide`, never on their own.
//!
//! What the channels share is in [`kit`] (and [`text`]); a platform module
//! keeps only its wire types, authentication, client, escaping and
//! templates.

pub mod kit;
pub mod slack;
pub mod teams;
pub mod text;

use axum::Router;

use crate::config::Settings;
use crate::outbox::Outbox;
use crate::service::App;

/// The channels that receive a message for each request needing approval.
pub fn enabled(settings: &Settings) -> Vec<&'static str> {
    let mut channels = vec![];
    if settings.slack.enabled() {
        channels.push("slack");
    }
    if settings.teams.enabled() {
        channels.push("teams");
    }
    channels
}

/// Registers each enabled channel's outbox handlers and returns its routes.
pub async fn install(app: &App, outbox: &mut Outbox) -> anyhow::Result<Vec<Router<App>>> {
    let mut routers = vec![];
    if app.settings.slack.enabled() {
        routers.push(slack::install(app, outbox).await?);
    }
    if app.settings.teams.enabled() {
        routers.push(teams::install(app, outbox).await?);
    }
    Ok(routers)
}
