use crate::bot::*;

#[tokio::test]
async fn adding_the_bot_to_a_team_captures_the_conversation_for_the_cli() {
    let t = spawn_teams().await;
    let res = t
        .send(&t.bot_added_activity("19:general@thread.tacv2", Some("Platform")))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(t.app.count("teams_conversations").await, 1);
    let out = t.app.cli(&["teams", "conversations", "list"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("19:general@thread.tacv2"), "{listed}");
    assert!(listed.contains("Platform"), "{listed}");
    assert!(listed.contains(&t.bf.service_url()), "{listed}");
    assert_eq!(t.app.all_kinds().await, ["teams.conversation_added"]);
}

#[tokio::test]
async fn the_default_conversation_set_with_the_cli_receives_the_cards() {
    let t = spawn_teams().await;
    t.send(&t.bot_added_activity("19:general@thread.tacv2", Some("Platform")))
        .await;
    let out = t
        .app
        .cli(&[
            "teams",
            "conversations",
            "set-default",
            "19:general@thread.tacv2",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed =
        String::from_utf8_lossy(&t.app.cli(&["teams", "conversations", "list"]).await.stdout)
            .to_string();
    assert!(listed.lines().nth(1).unwrap().starts_with('*'), "{listed}");
    let (_, _, post) = t.create_and_post().await;
    assert_eq!(post.conversation(), "19:general@thread.tacv2");
}

#[tokio::test]
async fn setting_an_unknown_conversation_as_default_is_refused() {
    let t = spawn_teams().await;
    let out = t
        .app
        .cli(&[
            "teams",
            "conversations",
            "set-default",
            "19:nowhere@thread.tacv2",
        ])
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never captured"));
}

#[tokio::test]
async fn removing_the_bot_marks_the_conversation_removed() {
    let t = spawn_teams().await;
    t.send(&t.bot_added_activity("19:general@thread.tacv2", None))
        .await;
    let mut removed = t.bot_added_activity("19:general@thread.tacv2", None);
    removed.as_object_mut().unwrap().remove("membersAdded");
    removed["membersRemoved"] = serde_json::json!([bot_account()]);
    assert_eq!(t.send(&removed).await.status(), 200);
    let listed =
        String::from_utf8_lossy(&t.app.cli(&["teams", "conversations", "list"]).await.stdout)
            .to_string();
    assert!(listed.contains("bot removed"), "{listed}");
}

#[tokio::test]
async fn a_policy_rules_teams_conversation_overrides_the_default() {
    let t = spawn_teams_with_policy(
        "rules:\n  - name: exports\n    action: db.export\n    effect: require_approval\n    teams_conversation: \"19:data-team@thread.tacv2\"\n",
    )
    .await;
    let (_, _, post) = t.create_and_post().await;
    assert_eq!(post.conversation(), "19:data-team@thread.tacv2");
}
