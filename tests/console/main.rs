//! Black-box tests of the web console: the real service with the fake
//! Slack of tests/slack, driven through a real headless Chromium
//! (`browser`), plus a plain HTTP client where a browser would hide the
//! point (a POST without its CSRF token, the security headers).

#[path = "../slack/fake_slack.rs"]
mod fake_slack;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../slack/support.rs"]
mod support;

mod browser;
mod harness;

mod chat;
mod decisions;
mod fake_oidc;
mod inert;
mod oidc;
mod pages;
mod security;
mod sign_in;
mod step_up;
