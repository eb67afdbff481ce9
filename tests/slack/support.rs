//! The Slack test harness: the real service pointed at a fake Slack, and
//! requests signed exactly as Slack signs them (`X-Slack-Request-Timestamp`,
//! `X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}"))`),
//! interactions as a form field `payload=<json>`, slash commands as form
//! fields.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use countersign::config::{Secret, Settings};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_slack::{Call, FakeSlack};
use crate::helpers::{TestApp, spawn_with};

pub const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const TOKEN: &str = "xoxb-test-token-never-logged";
pub const TEAM: &str = "T1";
pub const CHANNEL: &str = "C0APPROVALS";

/// Owns the agent's API key (`app.agent()`): the requester's human.
pub const OLIVIA: &str = "U0OLIVIA";
/// The agent acts on her behalf in `export_request()`.
pub const ALICE: &str = "U0ALICE";
pub const BOB: &str = "U0BOB";
/// In the policies' `auditors` group.
pub const CAROL: &str = "U0CAROL";
pub const DAN: &str = "U0DAN";
/// A Slack account whose profile has no e-mail.
pub const NOMAIL: &str = "U0NOMAIL";

pub struct SlackTest {
    pub app: TestApp,
    pub fake: FakeSlack,
}

pub async fn spawn_slack(policy: Option<&str>) -> SlackTest {
    spawn_slack_with(policy, |_| {}).await
}

pub async fn spawn_slack_with(
    policy: Option<&str>,
    tweak: impl FnOnce(&mut Settings),
) -> SlackTest {
    spawn_slack_on(FakeSlack::start().await, policy, tweak).await
}

/// [`spawn_slack_with`] against a fake Slack the caller has set up.
pub async fn spawn_slack_on(
    fake: FakeSlack,
    policy: Option<&str>,
    tweak: impl FnOnce(&mut Settings),
) -> SlackTest {
    for (id, email) in [
        (OLIVIA, Some("olivia@example.com")),
        (ALICE, Some("alice@example.com")),
        (BOB, Some("bob@example.com")),
        (CAROL, Some("carol@example.com")),
        (DAN, Some("dan@example.com")),
        (NOMAIL, None),
    ] {
        fake.user(id, email);
    }
    let api_url = fake.api_url();
    let policy = policy.map(str::to_string);
    let app = spawn_with(move |s| {
        configure(s, &api_url);
        if let Some(p) = policy {
            let path = PathBuf::from(&s.db).with_file_name("policy.yaml");
            std::fs::write(&path, p).unwrap();
            s.policy = Some(path);
        }
        tweak(s);
    })
    .await;
    SlackTest { app, fake }
}

pub fn configure(s: &mut Settings, api_url: &str) {
    s.slack.bot_token = Some(Secret::new(TOKEN));
    s.slack.signing_secret = Some(Secret::new(SECRET));
    s.slack.channel = Some(CHANNEL.into());
    s.slack.api_url = api_url.into();
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn sign(secret: &str, ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Waits (up to 10 s) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The deny modal's submission, as Slack sends it for the modal that
/// `views.open` received, with `reason` typed in.
pub fn view_submission(user: &str, opened: &Call, reason: &str) -> Value {
    let view = &opened.body["view"];
    json!({
        "type": "view_submission",
        "team": { "id": TEAM, "domain": "acme" },
        "user": { "id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": TEAM },
        "api_app_id": "A0COUNTERSIGN",
        "token": "deprecated-verification-token",
        "trigger_id": "trigger-submit",
        "view": {
            "id": "V1", "team_id": TEAM, "type": "modal", "hash": "h1",
            "title": view["title"], "blocks": view["blocks"],
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": { "values": { "reason": { "reason": { "type": "plain_text_input", "value": reason } } } },
        },
        "response_urls": [],
    })
}

/// The value of the button `action_id` in a posted or updated message.
pub fn button(call: &Call, action_id: &str) -> Option<String> {
    call.body["blocks"]
        .as_array()?
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .find(|e| e["action_id"] == action_id)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

/// Every text in a message's blocks, joined.
pub fn texts(call: &Call) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        Value::String(s) if k == "text" => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    walk(&call.body["blocks"], &mut out);
    out.join("\n")
}

impl SlackTest {
    pub async fn post_raw(
        &self,
        path: &str,
        body: String,
        headers: &[(&str, String)],
    ) -> reqwest::Response {
        let mut req = self
            .app
            .client
            .post(self.app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.unwrap()
    }

    /// Posts `body` signed as Slack would, now.
    pub async fn signed(&self, path: &str, body: String) -> reqwest::Response {
        let ts = now();
        let sig = sign(SECRET, ts, &body);
        self.post_raw(
            path,
            body,
            &[
                ("x-slack-request-timestamp", ts.to_string()),
                ("x-slack-signature", sig),
            ],
        )
        .await
    }

    pub async fn interaction(&self, payload: Value) -> reqwest::Response {
        self.signed(
            "/slack/interactions",
            form(&[("payload", &payload.to_string())]),
        )
        .await
    }

    pub fn block_actions(&self, user: &str, action_id: &str, value: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": { "id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": TEAM },
            "api_app_id": "A0COUNTERSIGN",
            "token": "deprecated-verification-token",
            "container": { "type": "message", "message_ts": "1700000000.000001", "channel_id": CHANNEL, "is_ephemeral": false },
            "trigger_id": format!("trigger-{user}"),
            "team": { "id": TEAM, "domain": "acme" },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": CHANNEL, "name": "approvals" },
            "message": { "type": "message", "ts": "1700000000.000001", "text": "Approval needed", "blocks": [
                { "type": "rich_text", "block_id": "x", "elements": [] }
            ] },
            "state": { "values": {} },
            "response_url": self.fake.response_url(&format!("click-{user}")),
            "actions": [{
                "action_id": action_id, "block_id": "countersign_decision",
                "text": { "type": "plain_text", "text": "Approve", "emoji": true },
                "value": value, "style": "primary", "type": "button", "action_ts": "1700000001.000001"
            }]
        })
    }

    /// A click on a button of the message.
    pub async fn click(&self, user: &str, action_id: &str, value: &str) -> reqwest::Response {
        self.interaction(self.block_actions(user, action_id, value))
            .await
    }

    /// Submits the deny modal that `views.open` received.
    pub async fn submit_denial(
        &self,
        user: &str,
        opened: &Call,
        reason: &str,
    ) -> reqwest::Response {
        self.interaction(view_submission(user, opened, reason))
            .await
    }

    /// Runs `/audit <text>` as `user`; returns the HTTP answer's JSON.
    pub async fn audit(&self, user: &str, text: &str) -> Value {
        let res = self.audit_raw(user, text).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn audit_raw(&self, user: &str, text: &str) -> reqwest::Response {
        let fields = self.audit_fields(user, text);
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.signed("/slack/commands", form(&pairs)).await
    }

    /// The fields Slack sends for `/audit <text>` run by `user`: form
    /// fields over HTTP, a JSON object over Socket Mode.
    pub fn audit_fields(&self, user: &str, text: &str) -> Vec<(&'static str, String)> {
        vec![
            ("token", "deprecated-verification-token".into()),
            ("team_id", TEAM.into()),
            ("team_domain", "acme".into()),
            ("channel_id", CHANNEL.into()),
            ("channel_name", "approvals".into()),
            ("user_id", user.into()),
            ("user_name", user.to_lowercase()),
            ("command", "/audit".into()),
            ("text", text.into()),
            ("api_app_id", "A0COUNTERSIGN".into()),
            ("is_enterprise_install", "false".into()),
            (
                "response_url",
                self.fake.response_url(&format!("audit-{user}")),
            ),
            ("trigger_id", "trigger-audit".into()),
        ]
    }

    /// Creates a request through the API and waits for its Slack post.
    pub async fn create_posted(&self, token: &str, body: Value) -> (String, Call) {
        let a = self.app.create(token, body).await;
        let id = a["id"].as_str().unwrap().to_string();
        // Other posts (outcome notices of earlier requests) may land first.
        let mine = |c: &Call| button(c, "countersign_approve").is_some_and(|v| v.contains(&id));
        eventually("the post of this request", || async {
            self.fake.successes("chat.postMessage").iter().any(mine)
        })
        .await;
        let post = self
            .fake
            .successes("chat.postMessage")
            .into_iter()
            .find(mine)
            .expect("the post of this request");
        // The message reference and the slack.posted event commit together,
        // after Slack answered: wait for them so later checks start settled.
        eventually("the post to be recorded", || async {
            self.app.chat_message(&id, "slack").await.is_some()
        })
        .await;
        (id, post)
    }

    /// Waits until `chat.update` has shown `status` for the request.
    pub async fn wait_update(&self, status: &str) -> Call {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = self
                .fake
                .successes("chat.update")
                .into_iter()
                .rev()
                .find(|c| texts(c).to_lowercase().contains(status))
            {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for a chat.update showing {status}: {:#?}",
                self.fake.calls("chat.update")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for an ephemeral message to `user` and returns its text.
    pub async fn ephemeral_to(&self, user: &str) -> String {
        let calls = self.fake.wait_for("chat.postEphemeral", 1).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut calls = calls;
        loop {
            if let Some(c) = calls.iter().rev().find(|c| c.body["user"] == user) {
                return c.body["text"].as_str().unwrap_or_default().to_string();
            }
            assert!(Instant::now() < deadline, "no ephemeral message to {user}");
            tokio::time::sleep(Duration::from_millis(20)).await;
            calls = self.fake.successes("chat.postEphemeral");
        }
    }

    /// Decisions recorded on the request, counted through the store.
    pub async fn decisions(&self, id: &str) -> i64 {
        self.request(id).await.decisions.len() as i64
    }

    pub async fn status(&self, id: &str) -> String {
        self.request(id).await.status.as_str().to_string()
    }

    /// The request as the store serves it (checked against its trail).
    async fn request(&self, id: &str) -> countersign::store::requests::Approval {
        countersign::store::requests::get(&self.app.app.store, id.parse().unwrap())
            .await
            .unwrap()
            .expect("the request exists")
    }

    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        self.app.cli(args).await
    }

    /// How many audit events of `kind` the request has.
    pub async fn count_kind(&self, id: &str, kind: &str) -> usize {
        self.app
            .audit_kinds(id)
            .await
            .iter()
            .filter(|k| *k == kind)
            .count()
    }

    /// Kinds of every audit event, oldest first.
    pub async fn all_kinds(&self) -> Vec<String> {
        self.app.all_kinds().await
    }
}
