//! How scenario d's person clicks "Approve", and the fake Slack Web API the
//! service talks to while the bench runs.
//!
//! With Slack on, the click is what Slack itself sends: a signed
//! `block_actions` interaction (`X-Slack-Signature: v0=HMAC-SHA256(secret,
//! "v0:{ts}:{body}")`) for a user linked to a person. The fake Web API
//! answers every call the service makes (`chat.postMessage`, `chat.update`,
//! `users.info`, …) with `ok: true` at once, so the figures are
//! Countersign's, not Slack's.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::response::IntoResponse;
use axum::routing::any;
use hmac::{KeyInit, Mac};
use hyper::{Request, StatusCode};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::client::Body;
use crate::scenarios::Ctx;

pub const TEAM: &str = "TBENCH";
pub const USER: &str = "UAPPROVER";
pub const CHANNEL: &str = "CBENCH";
/// The Slack user of `user:owner@example.com`, whom the agent acts for.
pub const OWNER: &str = "UOWNER";

pub enum Clicker {
    /// `POST /v1/approvals/{id}/decisions` with a `decide` key.
    Api,
    /// A signed Slack interaction.
    Slack { signing_secret: String },
}

impl Clicker {
    pub fn name(&self) -> &'static str {
        match self {
            Clicker::Api => "the API",
            Clicker::Slack { .. } => "a signed Slack interaction",
        }
    }

    pub fn path(&self) -> &'static str {
        match self {
            Clicker::Api => "POST /v1/approvals/{id}/decisions",
            Clicker::Slack { .. } => "POST /slack/interactions",
        }
    }

    pub fn is_slack(&self) -> bool {
        matches!(self, Clicker::Slack { .. })
    }

    pub fn accepted(&self, status: StatusCode) -> bool {
        status == StatusCode::OK
    }

    /// Approves request `id`, whose payload hash the approver was shown.
    pub fn approve(&self, ctx: &Ctx, id: Uuid, payload_sha256: &str) -> Request<Body> {
        match self {
            Clicker::Api => ctx.api.post_json(
                &format!("/v1/approvals/{id}/decisions"),
                &ctx.approver,
                r#"{"verdict":"approve"}"#,
            ),
            Clicker::Slack { signing_secret } => {
                let payload = block_actions(id, payload_sha256);
                let body = format!("payload={}", urlencoding::encode(&payload));
                let ts = chrono::Utc::now().timestamp().to_string();
                let signature = sign(signing_secret, &ts, &body);
                ctx.api.post_form(
                    "/slack/interactions",
                    &[
                        ("x-slack-request-timestamp", ts),
                        ("x-slack-signature", signature),
                    ],
                    body,
                )
            }
        }
    }
}

/// `v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}"))`, as Slack signs.
pub fn sign(secret: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

type Hmac = hmac::Hmac<Sha256>;

/// The interaction Slack sends when the linked approver presses Approve on
/// the request's message: the button's `action_id` and `value` are the
/// ones the channel renders (`countersign_approve`, and the request id with
/// the payload hash shown, as JSON).
fn block_actions(id: Uuid, payload_sha256: &str) -> String {
    let value = json!({ "request_id": id, "payload_sha256": payload_sha256 }).to_string();
    json!({
        "type": "block_actions",
        "team": { "id": TEAM, "domain": "bench" },
        "user": { "id": USER, "username": "approver", "name": "approver", "team_id": TEAM },
        "api_app_id": "ABENCH",
        "token": "legacy-verification-token-unused",
        "trigger_id": "1.2.3",
        "response_url": "http://127.0.0.1:9/unused",
        "channel": { "id": CHANNEL, "name": "approvals" },
        "container": { "type": "message", "message_ts": "1700000000.000100", "channel_id": CHANNEL, "is_ephemeral": false },
        "message": { "type": "message", "ts": "1700000000.000100", "text": "approval request" },
        "state": { "values": {} },
        "actions": [{
            "type": "button",
            "action_id": "countersign_approve",
            "block_id": "countersign_decision",
            "value": value,
            "style": "primary",
            "action_ts": "1700000001.000200",
        }],
    })
    .to_string()
}

/// Starts the fake Slack Web API on a free loopback port.
pub async fn fake_web_api() -> anyhow::Result<SocketAddr> {
    let app = Router::new().route("/api/{method}", any(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn answer(Path(method): Path<String>, RawQuery(_q): RawQuery) -> impl IntoResponse {
    let ts = format!(
        "{}.{:06}",
        chrono::Utc::now().timestamp(),
        rand::random::<u32>() % 1_000_000
    );
    axum::Json(match method.as_str() {
        "users.info" => json!({
            "ok": true,
            "user": {
                "id": USER, "team_id": TEAM, "name": "approver", "deleted": false, "is_bot": false,
                "profile": { "email": "approver@example.com", "real_name": "A. Prover" },
            },
        }),
        // The outcome notice to the human an agent acted for (every
        // request a person decided): found by e-mail, then a DM posted to
        // the user id.
        "users.lookupByEmail" => json!({
            "ok": true,
            "user": {
                "id": OWNER, "team_id": TEAM, "name": "owner", "deleted": false, "is_bot": false,
                "profile": { "email": "owner@example.com" },
            },
        }),
        "chat.postMessage" | "chat.update" => json!({ "ok": true, "channel": CHANNEL, "ts": ts }),
        _ => json!({ "ok": true }),
    })
}
