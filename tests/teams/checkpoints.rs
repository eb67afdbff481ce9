//! Checkpoints in a Teams conversation: each published head is posted as
//! a plain-text message through the Bot Connector.

use std::time::Duration;

use crate::bot::*;

const AUDIT_CONVERSATION: &str = "19:audit-log@thread.tacv2";

#[tokio::test]
async fn checkpoints_are_posted_as_plain_text_to_the_audit_conversation() {
    let t = spawn_teams_with(None, |s| {
        s.checkpoint_sinks.teams_conversation = Some(AUDIT_CONVERSATION.into());
        s.checkpoint_sinks.interval = Duration::from_millis(200);
    })
    .await;
    t.create_and_post().await;
    let head = || async {
        countersign::store::checkpoint_sinks::newest_signed_seq(&t.app.app.store)
            .await
            .unwrap()
            .unwrap_or(0)
    };
    // Posting the card audits, so the head moves a little before it settles.
    let mut found = None;
    for _ in 0..600 {
        let want = format!("Audit checkpoint: event {} at ", head().await);
        found = t.bf.posts().into_iter().rfind(|c| {
            c.conversation() == AUDIT_CONVERSATION
                && c.status == 200
                && c.body["text"].as_str().unwrap_or("").starts_with(&want)
        });
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post = found.expect("the newest head was posted to the audit conversation");
    assert_eq!(post.body["textFormat"], "plain", "{}", post.body);
    let key = t.app.app.store.signer.public_hex().to_string();
    assert!(
        post.body["text"].as_str().unwrap().contains(&key),
        "{}",
        post.body
    );
}
