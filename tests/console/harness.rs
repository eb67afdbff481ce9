//! What every console test does: a Slack-connected service, a person's
//! one-time link from `/audit login`, a browser signed in with it.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

use crate::browser::Browser;
use crate::support::{SlackTest, button, spawn_slack, spawn_slack_with};

pub use crate::support::{BOB, CAROL, OLIVIA};

/// Carol audits; Bob and Dan may approve anything.
pub const POLICY: &str = r#"
groups:
  auditors: [user:carol@example.com]
rules:
  - name: drops
    action: db.drop
    effect: require_approval
    step_up: console
  - name: exports
    action: db.export
    effect: require_approval
"#;

pub struct ConsoleTest {
    pub slack: SlackTest,
}

pub async fn spawn() -> ConsoleTest {
    ConsoleTest {
        slack: spawn_slack(Some(POLICY)).await,
    }
}

pub async fn spawn_with(tweak: impl FnOnce(&mut countersign::config::Settings)) -> ConsoleTest {
    ConsoleTest {
        slack: spawn_slack_with(Some(POLICY), tweak).await,
    }
}

/// The URL in a `/audit login` answer (`<url|Sign in to Countersign>`).
pub fn link_in(answer: &Value) -> String {
    let text = answer["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"));
    let start = text.find('<').expect("a link") + 1;
    let end = text[start..].find('|').expect("a labelled link") + start;
    text[start..end].to_string()
}

impl ConsoleTest {
    pub fn url(&self, path: &str) -> String {
        self.slack.app.url(path)
    }

    /// `/audit login` as the Slack user `user`; the link it answered with.
    pub async fn login_link(&self, user: &str) -> String {
        let answer = self.slack.audit(user, "login").await;
        link_in(&answer)
    }

    /// A browser signed in as the Slack user `user` through their link.
    pub async fn browser_as(&self, user: &str) -> Browser {
        let link = self.login_link(user).await;
        let b = Browser::start().await;
        b.goto(&link).await;
        b.click("#sign-in").await;
        b.wait_text("Sign out").await;
        b
    }

    /// Creates a request as the agent and waits for its Slack post;
    /// returns its id and the button value the post carries.
    pub async fn request(&self, body: Value) -> (String, String) {
        let agent = self.slack.app.agent().await;
        let (id, post) = self.slack.create_posted(&agent, body).await;
        let value = button(&post, "countersign_approve").expect("an approve button");
        (id, value)
    }

    pub async fn status(&self, id: &str) -> String {
        self.slack.status(id).await
    }

    /// A plain HTTP client (no redirects followed) signed in through a
    /// link, and the session's cookie header.
    pub async fn http_session(&self, user: &str) -> (reqwest::Client, String) {
        let link = self.login_link(user).await;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let res = client
            .post(&link)
            .form(&[("next", "/ui/")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "signing in with the link redirects");
        let cookie = res
            .headers()
            .get("set-cookie")
            .expect("a session cookie")
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        (client, cookie)
    }
}
