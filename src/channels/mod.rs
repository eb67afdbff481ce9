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

/// What the enabled channels add to the service: their routes, and the
/// Slack Socket Mode listener when one is configured.
#[derive(Default)]
pub struct Installed {
    pub routers: Vec<Router<App>>,
    pub slack_socket_mode: Option<slack::socket_mode::SocketMode>,
}

/// Registers each enabled channel's outbox handlers and returns its routes.
pub async fn install(app: &App, outbox: &mut Outbox) -> anyhow::Result<Installed> {
    let mut installed = Installed::default();
    if app.settings.slack.enabled() {
        let (routes, socket) = slack::install(app, outbox).await?;
        installed.routers.push(routes);
        installed.slack_socket_mode = socket;
    }
    if app.settings.teams.enabled() {
        installed.routers.push(teams::install(app, outbox).await?);
    }
    Ok(installed)
}
