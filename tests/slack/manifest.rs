//! The Slack app manifest at the repository root is complete and points at
//! the routes the service really serves.

use slack_morphism::prelude::SlackAppManifest;

use crate::support::*;

#[tokio::test]
async fn the_app_manifest_is_complete_and_names_the_real_endpoints() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.yaml"))
        .expect("manifest.yaml at the repository root");
    let manifest: SlackAppManifest = serde_norway::from_str(&text).expect("a Slack app manifest");

    let features = manifest.features.expect("features");
    assert!(features.bot_user.is_some(), "a bot user");
    let commands = features.slash_commands.expect("slash commands");
    let audit = commands
        .iter()
        .find(|c| c.command == "/audit")
        .expect("/audit");
    assert_eq!(audit.should_escape, Some(true), "mentions arrive as <@U…>");
    let command_url = audit.url.as_ref().expect("a command URL");

    let interactivity = manifest
        .settings
        .and_then(|s| s.interactivity)
        .expect("interactivity");
    assert!(interactivity.is_enabled);
    let interactions_url = interactivity.request_url.expect("an interactivity URL");

    let scopes: Vec<String> = manifest
        .oauth_config
        .and_then(|o| o.scopes)
        .and_then(|s| s.bot)
        .expect("bot scopes")
        .into_iter()
        .map(|s| s.0)
        .collect();
    for needed in ["chat:write", "commands", "users:read", "users:read.email"] {
        assert!(scopes.iter().any(|s| s == needed), "scope {needed}");
    }

    // Both URLs are routes of the service: unsigned, they are refused (401),
    // not unknown (404).
    let t = spawn_slack(None).await;
    for url in [command_url, &interactions_url] {
        assert_eq!(
            url.host_str(),
            Some("countersign.example.com"),
            "a placeholder"
        );
        let res = t.post_raw(url.path(), "text=x".into(), &[]).await;
        assert_eq!(res.status(), 401, "{}", url.path());
    }
}
