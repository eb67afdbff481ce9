//! The Slack app manifests at the repository root are complete: the HTTP
//! one (`manifest.yaml`) points at the routes the service really serves,
//! and its Socket Mode variant (`manifest-socket-mode.yaml`) is the same
//! app with Socket Mode on and no request URLs.

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

fn manifest(file: &str) -> SlackAppManifest {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the manifest at the repository root");
    serde_norway::from_str(&text).expect("a Slack app manifest")
}

#[tokio::test]
async fn the_socket_mode_manifest_is_the_same_app_with_socket_mode_on_and_no_request_urls() {
    let http = manifest("manifest.yaml");
    let socket = manifest("manifest-socket-mode.yaml");

    let settings = |m: &SlackAppManifest| m.settings.clone().expect("settings");
    assert_eq!(settings(&http).socket_mode_enabled, Some(false));
    assert_eq!(settings(&socket).socket_mode_enabled, Some(true));
    let interactivity = settings(&socket).interactivity.expect("interactivity");
    assert!(
        interactivity.is_enabled,
        "clicks still arrive, over the socket"
    );
    assert!(interactivity.request_url.is_none(), "no request URL");

    let features = |m: &SlackAppManifest| m.features.clone().expect("features");
    let commands = features(&socket).slash_commands.expect("slash commands");
    let audit = commands
        .iter()
        .find(|c| c.command == "/audit")
        .expect("/audit");
    assert!(audit.url.is_none(), "no command URL");
    assert_eq!(audit.should_escape, Some(true));

    // Everything else is the HTTP manifest's: the same scopes, bot user
    // and command, so switching transports changes nothing else.
    assert_eq!(json(&http.oauth_config), json(&socket.oauth_config));
    assert_eq!(
        json(&http.display_information),
        json(&socket.display_information)
    );
    assert_eq!(
        json(&features(&http).bot_user),
        json(&features(&socket).bot_user)
    );
    assert_eq!(
        json(&features(&http).app_home),
        json(&features(&socket).app_home)
    );
    let without_url = |m: &SlackAppManifest| {
        let mut c = serde_json::to_value(features(m).slash_commands).unwrap();
        c[0].as_object_mut().unwrap().remove("url");
        c
    };
    assert_eq!(without_url(&http), without_url(&socket));
}

/// A manifest part as the JSON Slack reads.
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}
