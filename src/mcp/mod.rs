//! The MCP server: the approval gate as tools any MCP-speaking agent can
//! call (`request_approval`, `wait_for_approval`, `get_approval`,
//! `list_approvals`).
//!
//! Two transports, one set of tools:
//! - `POST /mcp` (streamable HTTP, served by the official SDK `rmcp`): the
//!   tools run in-process ([`tools::Gate`]) and call the same `App`
//!   operations as the HTTP API, so validation, policy, the decision rules
//!   and the audit trail are the API's own.
//! - `countersign mcp` (stdio, [`stdio`]): a bridge for clients that can only
//!   launch a command. It is an MCP client of `COUNTERSIGN_URL/mcp` and
//!   forwards each call there, so there is no second implementation of the
//!   tools to drift, and any failure to get an answer is a tool error that
//!   says "not approved" (fail closed).
//!
//! Authentication happens before the MCP service sees a request: the
//! bearer key goes through the API's extractor ([`Authed`]), a missing or
//! bad key is the API's 401 problem document, and the key rides to the tool
//! handlers in the request's extensions (rmcp hands the HTTP request parts
//! to each handler). Every tool call uses the key of the HTTP request that
//! carried it, never one remembered from the session's first request.

pub mod stdio;
pub mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::error::AppError;
use crate::http::auth::Authed;
use crate::service::App;
use crate::store::keys::Scope;

/// `/mcp`, behind the API's bearer-key check.
pub fn routes(app: &App) -> Router<App> {
    let config = StreamableHttpServerConfig::default()
        // rmcp checks `Host` against loopback names by default, against DNS
        // rebinding of an unauthenticated local server. Every request here
        // carries a bearer key a rebinding page cannot know, and a deployed
        // gate is reached under the operator's own host name.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(app.settings.max_body_bytes)
        // Shutdown ends open MCP streams, as it ends the API's long-polls.
        .with_cancellation_token(app.stopping.child_token());
    let gate = app.clone();
    let service = StreamableHttpService::new(
        move || Ok(tools::Gate::new(gate.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .route_layer(middleware::from_fn_with_state(app.clone(), authenticate))
}

/// The API's own key check; the key (principal, scopes) travels on in the
/// request's extensions to the tool handlers.
async fn authenticate(
    Authed(key): Authed,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    // Requesting is what the tools are for; reading one's own requests
    // needs no more than that (as in the API).
    key.require(Scope::Request)?;
    req.extensions_mut().insert(key);
    Ok(next.run(req).await)
}
