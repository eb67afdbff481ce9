//! Microsoft Teams: approval cards with real Approve / Deny buttons over
//! the Bot Framework, and `audit …` answered in chat.
//!
//! No maintained Rust Bot Framework crate exists, so this is a small one on
//! reqwest and jsonwebtoken, in the order data flows:
//! [`auth`] checks the JWT on every inbound activity, [`activity`] handles
//! clicks, membership changes and messages, [`identity`] maps the sender
//! to a principal, [`card`] renders Adaptive Cards 1.5 from templates,
//! [`connector`] gets tokens and calls the Bot Connector, [`delivery`]
//! posts and updates cards from the outbox, and [`conversations`] keeps
//! the conversation references the bot may post to. What is not Teams'
//! own (identity resolution, delivery rules, "decide and explain", the
//! audit answer, the view of a request) is the kit's
//! ([`crate::channels::kit`]); decisions go through `App::decide` like
//! every other channel's.

pub mod activity;
pub mod auth;
pub mod card;
pub mod connector;
pub mod conversations;
pub mod delivery;
pub mod identity;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use bytes::Bytes;

use crate::channels::kit::identity::Resolver;
use crate::outbox::Outbox;
use crate::service::App;

/// The channel's name in outbox kinds, lanes, decisions and chat_messages.
pub const CHANNEL: &str = "teams";

/// What the Teams handlers share.
pub struct Teams {
    pub app: App,
    pub verifier: auth::Verifier,
    pub connector: connector::Connector,
    pub templates: card::Templates,
    identities: Resolver,
    /// When set, activities from other tenants are refused.
    tenant: Option<String>,
}

/// Registers `teams.post` / `teams.update` and returns the messaging
/// endpoint's router (`POST /teams/messages`).
pub async fn install(app: &App, outbox: &mut Outbox) -> anyhow::Result<Router<App>> {
    let s = &app.settings.teams;
    let app_id = s
        .app_id
        .clone()
        .ok_or_else(|| anyhow::anyhow!("Teams needs COUNTERSIGN_TEAMS_APP_ID"))?;
    if s.app_password.is_none() {
        tracing::warn!("COUNTERSIGN_TEAMS_APP_PASSWORD is not set: Teams cards cannot be posted");
    }
    let templates = card::Templates::load(app.settings.templates_dir.as_deref())?;
    let teams = Arc::new(Teams {
        verifier: auth::Verifier::new(app.http.clone(), s.openid_metadata_url.clone(), app_id),
        connector: connector::Connector::new(app.http.clone(), s),
        templates,
        identities: Resolver::new(app.clone()),
        tenant: s.tenant.clone(),
        app: app.clone(),
    });
    crate::channels::kit::delivery::register(outbox, app, teams.clone());
    Ok(Router::new().route(
        "/teams/messages",
        post(
            move |State(app): State<App>, headers: HeaderMap, body: Bytes| {
                activity::handle(teams.clone(), app, headers, body)
            },
        ),
    ))
}
