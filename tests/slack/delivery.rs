//! Posting requests to Slack and updating the message in place, through
//! the outbox: content, escaping, retries, ordering, permanent failures.

use std::time::Duration;

use serde_json::{Value, json};
use slack_morphism::prelude::SlackBlock;

use crate::fake_slack::Failure;
use crate::helpers::*;
use crate::support::*;

fn parse_blocks(v: &Value) -> Vec<SlackBlock> {
    let blocks: Vec<SlackBlock> =
        serde_json::from_value(v.clone()).expect("the blocks parse as Block Kit");
    assert!(
        !blocks.iter().any(|b| matches!(b, SlackBlock::Unknown(_))),
        "every block is a known Block Kit block: {v:#}"
    );
    blocks
}

#[tokio::test]
async fn a_request_needing_approval_is_posted_with_approve_and_deny_and_agent_text_arrives_escaped()
{
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["summary"] = json!("Export for <!channel> and <@U123>, see <https://evil|click>");
    body["justification"] = json!("<!here> asked & approved");
    body["details"] = json!({ "rows": 120000, "note": "<@U999> <https://evil.example|docs>" });
    let (id, post) = t.create_posted(&agent, body).await;

    assert_eq!(post.body["channel"], CHANNEL);
    assert_eq!(
        post.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let blocks = parse_blocks(&post.body["blocks"]);
    assert!(blocks.len() <= 50);

    let raw = post.body["blocks"].to_string();
    for evil in [
        "<!channel>",
        "<@U123>",
        "<https://evil|click>",
        "<!here>",
        "<@U999>",
    ] {
        assert!(!raw.contains(evil), "{evil} must arrive escaped: {raw}");
    }
    let shown = texts(&post);
    assert!(shown.contains("&lt;!channel&gt;"), "{shown}");
    assert!(shown.contains("&lt;https://evil|click&gt;"), "{shown}");
    assert!(shown.contains("&amp; approved"), "{shown}");
    assert!(!post.body["text"].as_str().unwrap().contains('<'));

    let a: Value = t.app.approval(&agent, &id).await;
    let hash = a["payload_sha256"].as_str().unwrap();
    for (action, style) in [
        ("countersign_approve", "primary"),
        ("countersign_deny", "danger"),
    ] {
        let value = button(&post, action).unwrap_or_else(|| panic!("{action} button"));
        let value: Value = serde_json::from_str(&value).unwrap();
        assert_eq!(value["request_id"], id.as_str());
        assert_eq!(
            value["payload_sha256"], hash,
            "the click is bound to what was shown"
        );
        assert!(raw.contains(&format!("\"style\":\"{style}\"")));
    }
    assert!(
        raw.contains("\"confirm\""),
        "high risk asks for confirmation"
    );
    for field in [
        "Requested by",
        "On behalf of",
        "Policy rule",
        "Expires",
        "rows",
        "120000",
    ] {
        assert!(shown.contains(field), "the message shows {field}: {shown}");
    }
    assert!(
        shown.contains(&hash[..12]),
        "the short payload hash is shown"
    );
    assert!(shown.contains(&id), "the request id is shown");

    let stored = t.app.chat_message(&id, "slack").await.unwrap();
    assert_eq!(stored.conversation, CHANNEL);
    assert!(stored.message_id.starts_with("1700000000."));
    eventually("slack.posted is audited", || async {
        t.app
            .audit_kinds(&id)
            .await
            .contains(&"slack.posted".to_string())
    })
    .await;
}

#[tokio::test]
async fn a_low_risk_request_has_no_confirm_dialog() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["risk"] = json!("low");
    let (_, post) = t.create_posted(&agent, body).await;
    assert!(!post.body["blocks"].to_string().contains("\"confirm\""));
}

#[tokio::test]
async fn a_policy_rules_slack_channel_overrides_the_default_channel() {
    let t = spawn_slack(Some(
        "rules:\n  - name: exports\n    action: db.export\n    effect: require_approval\n    slack_channel: C0DBA\n",
    ))
    .await;
    let agent = t.app.agent().await;
    let (_, post) = t.create_posted(&agent, export_request()).await;
    assert_eq!(post.body["channel"], "C0DBA");
}

#[tokio::test]
async fn requests_decided_by_policy_at_once_are_not_posted() {
    let t = spawn_slack(Some(
        "rules:\n  - name: reads\n    action: db.read\n    effect: allow\n",
    ))
    .await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["action"] = json!("db.read");
    t.app.create(&agent, body).await;
    let queued = slack_rows(&t.app).await;
    assert_eq!(queued, 0);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_and_the_message_is_posted_exactly_once() {
    let t = spawn_slack(None).await;
    t.fake.fail(
        "chat.postMessage",
        [
            Failure::RateLimited {
                retry_after_secs: 1,
            },
            Failure::ServerError,
            Failure::RateLimited {
                retry_after_secs: 1,
            },
            Failure::ServerError,
            Failure::SlackError("internal_error"),
        ],
    );
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;

    // Give a wrongly repeated post every chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = t.fake.calls("chat.postMessage");
    assert_eq!(calls.len(), 6, "five failures, then one success");
    assert_eq!(
        t.fake.successes("chat.postMessage").len(),
        1,
        "posted exactly once"
    );
    for (i, c) in calls.iter().enumerate() {
        if c.status == 429 {
            let waited = calls[i + 1].at - c.at;
            // Stored times have millisecond precision, hence 990 ms.
            assert!(
                waited >= Duration::from_millis(990),
                "Retry-After is honoured: the next try came after {waited:?}"
            );
        }
    }
    assert_eq!(t.app.count("chat_messages").await, 1);
    let kinds = t.app.audit_kinds(&id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "slack.failed").count(), 5);
    assert_eq!(kinds.iter().filter(|k| *k == "slack.posted").count(), 1);
}

#[tokio::test]
async fn an_update_never_overtakes_its_post_and_edits_that_same_message() {
    let t = spawn_slack(None).await;
    t.fake.fail(
        "chat.postMessage",
        [
            Failure::RateLimited {
                retry_after_secs: 1,
            },
            Failure::ServerError,
        ],
    );
    let agent = t.app.agent().await;
    let bob = t.app.human("bob@example.com").await;
    let a = t.app.create(&agent, export_request()).await;
    let id = a["id"].as_str().unwrap();
    // Decided through the API while the post is still being retried.
    let res = t.app.decide(&bob, id, "approve", None).await;
    assert_eq!(res.status(), 200);

    let posts = t.fake.wait_for("chat.postMessage", 1).await;
    let update = t.wait_update("approved").await;
    assert!(update.at > posts[0].at, "the update came after the post");
    let ts = t.app.chat_message(id, "slack").await.unwrap().message_id;
    assert_eq!(update.body["ts"], ts.as_str());
    assert_eq!(update.body["channel"], CHANNEL);
    // Once in the approvals channel (the outcome notice to Alice is a
    // direct message of her own).
    let in_channel = |c: &&crate::fake_slack::Call| c.body["channel"] == CHANNEL;
    assert_eq!(
        t.fake
            .successes("chat.postMessage")
            .iter()
            .filter(in_channel)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_permanent_slack_error_is_given_up_at_once_and_audited() {
    let t = spawn_slack(None).await;
    t.fake.fail(
        "chat.postMessage",
        [Failure::SlackError("channel_not_found")],
    );
    let agent = t.app.agent().await;
    let a = t.app.create(&agent, export_request()).await;
    let id = a["id"].as_str().unwrap().to_string();
    eventually("the failure is audited", || async {
        t.app
            .audit_kinds(&id)
            .await
            .contains(&"delivery.given_up".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.fake.calls("chat.postMessage").len(), 1, "not retried");
    assert_eq!(t.app.count("chat_messages").await, 0);
    // The request itself is unaffected: it can still be decided elsewhere.
    assert_eq!(t.status(&id).await, "pending");
}

#[tokio::test]
async fn cancel_and_expiry_update_the_message_with_a_banner_and_no_buttons() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;
    let res = t
        .app
        .post_json(&agent, &format!("/v1/approvals/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let update = t.wait_update("cancelled").await;
    assert!(button(&update, "countersign_approve").is_none());
    assert!(button(&update, "countersign_deny").is_none());
    parse_blocks(&update.body["blocks"]);

    let mut body = export_request();
    body["expires_in"] = json!("1s");
    let (_, _) = t.create_posted(&agent, body).await;
    let update = t.wait_update("expired").await;
    assert!(button(&update, "countersign_approve").is_none());
}

#[tokio::test]
async fn slack_is_off_when_no_bot_token_is_set() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    app.create(&agent, export_request()).await;
    let queued = slack_rows(&app).await;
    assert_eq!(queued, 0);
    let res = app
        .client
        .post(app.url("/slack/interactions"))
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_bot_token_without_a_signing_secret_stops_the_service_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_in(dir.path());
    configure(&mut settings, "http://127.0.0.1:9/api");
    settings.slack.signing_secret = None;
    let err = countersign::startup::Server::build(settings)
        .await
        .err()
        .expect("the service refuses to start");
    assert!(err.to_string().contains("COUNTERSIGN_SLACK_SIGNING_SECRET"));
}

/// Outbox rows for Slack, delivered or not.
async fn slack_rows(app: &TestApp) -> usize {
    app.outbox()
        .await
        .iter()
        .filter(|r| r.kind.starts_with("slack."))
        .count()
}
