//! Checkpoints in a Slack channel: each published head is posted as a
//! short plain message, and `/audit verify` names it as the last one
//! handed out, with the sink it went to.

use std::time::Duration;

use crate::helpers::*;
use crate::support::*;

const AUDIT_CHANNEL: &str = "C0AUDITLOG";

async fn newest_signed(t: &SlackTest) -> i64 {
    countersign::store::checkpoint_sinks::newest_signed_seq(&t.app.app.store)
        .await
        .unwrap()
        .unwrap_or(0)
}

fn checkpoint_posts(t: &SlackTest) -> Vec<String> {
    t.fake
        .successes("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["channel"] == AUDIT_CHANNEL)
        .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn checkpoints_are_posted_to_the_audit_channel_and_audit_verify_names_the_sink() {
    let t = spawn_slack_with(None, |s| {
        s.checkpoint_sinks.slack_channel = Some(AUDIT_CHANNEL.into());
        s.checkpoint_sinks.interval = Duration::from_millis(200);
        s.audit_open_to_all = true;
    })
    .await;
    let agent = t.app.agent().await;
    // Not `create_posted`: a checkpoint is a chat.postMessage too, and
    // may arrive first.
    t.app.create(&agent, export_request()).await;

    let mut shown = String::new();
    for _ in 0..600 {
        let head = newest_signed(&t).await;
        if let Some(last) = checkpoint_posts(&t).last()
            && last.starts_with(&format!("Audit checkpoint: event {head} at "))
        {
            shown = last.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!shown.is_empty(), "{:?}", checkpoint_posts(&t));
    let key = t.app.app.store.signer.public_hex().to_string();
    assert!(shown.contains(&format!("signed by key {key}")), "{shown}");
    assert!(shown.contains("\nhash "), "{shown}");
    // A delivered checkpoint writes no event, so it makes no new head.
    assert!(!t.all_kinds().await.iter().any(|k| k == "delivery.given_up"),);

    let answer = t.audit(CAROL, "verify").await;
    let text = answer["blocks"].to_string();
    assert!(text.contains("Last checkpoint written: event"), "{text}");
    assert!(text.contains("(slack sink)"), "{text}");
}

#[tokio::test]
async fn a_checkpoint_channel_without_slack_configured_is_refused_at_start() {
    let env = |k: &str| {
        (k == "COUNTERSIGN_AUDIT_CHECKPOINT_SLACK_CHANNEL").then(|| AUDIT_CHANNEL.to_string())
    };
    let e = countersign::config::Settings::load(None, env, &Default::default()).unwrap_err();
    assert!(e.contains("COUNTERSIGN_SLACK_BOT_TOKEN"), "{e}");
}
