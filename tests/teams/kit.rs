//! What Teams does exactly as Slack does, because both use the channel kit
//! (`countersign::channels::kit`): the same tests stand in
//! `tests/slack/kit.rs`.

use serde_json::{Value, json};

use crate::bot::*;

const AUDITORS: &str = "
groups:
  auditors: [user:carol@example.com]
rules: []
";

/// Waits until every outbox row is done.
async fn outbox_settled(t: &TeamsApp) {
    eventually("every outbox row to be done", || async {
        t.app.outbox().await.iter().all(|e| e.done_at.is_some())
    })
    .await;
}

/// Sends `text` to the bot as `who`; returns the text of the reply's card.
async fn ask(t: &TeamsApp, who: &str, text: &str, mentions: &[&str]) -> String {
    let before = t.bf.replies().len();
    let res = t.send(&t.message_activity(who, text, mentions)).await;
    assert_eq!(res.status(), 200);
    let calls =
        t.bf.wait_for("the bot's reply", |c| {
            c.iter().filter(|c| c.is_reply()).count() > before
        })
        .await;
    let reply = calls
        .into_iter()
        .filter(|c| c.is_reply())
        .nth(before)
        .unwrap();
    card_text(reply.card())
}

#[tokio::test]
async fn a_second_post_of_a_request_already_posted_is_not_made() {
    let t = spawn_teams().await;
    let (_, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    t.app.enqueue(&["teams.post"], id).await;
    outbox_settled(&t).await;
    assert_eq!(t.bf.posts().len(), 1, "the card is posted once");
    let posted = t.app.audit_kinds(id).await;
    assert_eq!(posted.iter().filter(|k| *k == "teams.posted").count(), 1);
}

#[tokio::test]
async fn an_update_with_a_newer_one_queued_behind_it_is_skipped() {
    let t = spawn_teams().await;
    let (_, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    outbox_settled(&t).await;
    let before = t.bf.updates().len();
    t.app.enqueue(&["teams.update", "teams.update"], id).await;
    outbox_settled(&t).await;
    assert_eq!(
        t.bf.updates().len(),
        before + 1,
        "the newer update shows everything the older one would"
    );
}

#[tokio::test]
async fn a_long_summary_is_cut_at_the_limit_every_channel_shares() {
    let t = spawn_teams().await;
    let agent = t.app.agent().await;
    let limit = countersign::channels::text::Limit::Summary.chars();
    let mut body = countersign_test_request();
    body["summary"] = json!("x".repeat(limit + 234));
    let request = t.app.create(&agent, body).await;
    let id = request["id"].as_str().unwrap();
    let post = t.bf.wait_for_post().await;
    let shown = card_text(post.card());
    assert!(
        shown.contains(&format!(
            "{}… (234 more characters hidden: audit {id} shows all)",
            "x".repeat(limit)
        )),
        "{shown}"
    );
    assert!(!shown.contains(&"x".repeat(limit + 1)));
}

#[tokio::test]
async fn a_timeline_describes_a_denial_as_every_channel_does() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    let (_, request, _) = t.create_and_post().await;
    t.click("bob", "deny", &request, Some("freeze")).await;
    let id = request["id"].as_str().unwrap();
    let shown = ask(&t, "carol", &format!("audit {id}"), &[]).await;
    assert!(shown.contains("via teams · “freeze”"), "{shown}");
}

#[tokio::test]
async fn only_an_auditor_makes_the_service_look_up_a_mentioned_person() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    let lookups_of = |who: &str| {
        t.bf.calls()
            .iter()
            .filter(|c| c.is_member_lookup() && c.segments[4] == format!("29:{who}"))
            .count()
    };
    let refused = ask(&t, "bob", "audit @dave", &["dave"]).await;
    assert!(
        refused.contains("not in the policy's auditors group"),
        "{refused}"
    );
    assert_eq!(
        lookups_of("dave"),
        0,
        "a non-auditor cannot make us resolve Dave"
    );
    let answered = ask(&t, "carol", "audit @dave", &["dave"]).await;
    assert!(
        answered.contains("What dave@example.com requested and decided"),
        "{answered}"
    );
    assert_eq!(lookups_of("dave"), 1);
}

#[tokio::test]
async fn an_unmapped_click_is_audited_with_a_principal_shaped_actor() {
    let t = spawn_teams().await;
    let (_, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    t.click("mallory", "approve", &request, None).await;
    let blocked: Vec<(String, Value)> = t.app.events_of(id, "decision.blocked").await;
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    let (actor, data) = &blocked[0];
    assert_eq!(actor, "unmapped:teams:aad-mallory");
    assert_eq!(data["reason"], "unknown_person");
    assert_eq!(data["channel"], "teams");
}

/// The usual request, as the API takes it.
fn countersign_test_request() -> Value {
    crate::helpers::export_request()
}

#[tokio::test]
async fn the_person_an_agent_acted_for_is_told_the_outcome_in_a_direct_message() {
    let t = spawn_teams().await;
    let (_, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    t.click("bob", "approve", &request, None).await;
    let calls =
        t.bf.wait_for("the notice to Alice", |c| {
            c.iter()
                .any(|c| c.is_post() && c.conversation() == "dm-29:alice")
        })
        .await;
    let opened = calls
        .iter()
        .find(|c| c.method == "POST" && c.segments == ["v3", "conversations"])
        .expect("a one-to-one chat is opened");
    assert_eq!(opened.body["members"][0]["id"], "29:alice");
    let notice = calls
        .iter()
        .find(|c| c.is_post() && c.conversation() == "dm-29:alice")
        .unwrap();
    let text = card_text(notice.card());
    for shown in ["Approved", "db.export", "Decided by", "bob@example.com", id] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
    eventually("the notice audited", || async {
        t.app
            .audit_kinds(id)
            .await
            .contains(&"teams.notified".to_string())
    })
    .await;
    let (_, data) = t.app.events_of(id, "teams.notified").await.remove(0);
    assert_eq!(data["to"], "user:alice@example.com");
}

#[tokio::test]
async fn a_rule_can_keep_the_outcome_from_the_person_an_agent_acted_for() {
    let policy = "rules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    notify_on_behalf_of: false\n";
    let t = spawn_teams_with_policy(policy).await;
    let (_, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    t.click("bob", "approve", &request, None).await;
    eventually("the card updated", || async {
        t.app
            .audit_kinds(id)
            .await
            .contains(&"teams.updated".to_string())
    })
    .await;
    outbox_settled(&t).await;
    assert!(
        !t.bf
            .calls()
            .iter()
            .any(|c| c.segments == ["v3", "conversations"])
    );
    assert!(
        !t.app
            .audit_kinds(id)
            .await
            .contains(&"teams.notified".to_string())
    );
}

const REMINDING: &str = "rules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    remind_every: 1s\n    remind_max: 2\n";

#[tokio::test]
async fn approvers_are_reminded_in_a_reply_at_most_remind_max_times() {
    let t = spawn_teams_with_policy(REMINDING).await;
    let (_, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    let card = t.app.chat_message(id, "teams").await.unwrap().message_id;
    let replies = || {
        t.bf.replies()
            .into_iter()
            .filter(|c| c.segments[4] == card)
            .collect::<Vec<_>>()
    };
    eventually("two reminders", || async { replies().len() == 2 }).await;
    let first = &replies()[0].body;
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("Reminder 1"), "{text}");
    // Bob is a member of the conversation: mentioned, so Teams notifies him.
    assert!(
        text.contains("<at>bob</at>"),
        "mentions who may decide: {text}"
    );
    assert_eq!(first["entities"][0]["type"], "mention", "{first}");
    assert_eq!(first["entities"][0]["text"], "<at>bob</at>", "{first}");
    assert_eq!(first["entities"][0]["mentioned"]["id"], "29:bob", "{first}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(replies().len(), 2, "remind_max is the most");
    let kinds = t.app.audit_kinds(id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "request.reminded").count(), 2);
    assert_eq!(kinds.iter().filter(|k| *k == "teams.reminded").count(), 2);
}

#[tokio::test]
async fn an_approver_who_is_not_in_the_conversation_is_named_in_the_reminder_not_mentioned() {
    let t =
        spawn_teams_with_policy(&REMINDING.replace("user:bob@example.com", "user:zoe@example.com"))
            .await;
    let (_, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    let card = t.app.chat_message(id, "teams").await.unwrap().message_id;
    let reminder = || t.bf.replies().into_iter().find(|c| c.segments[4] == card);
    eventually("a reminder", || async { reminder().is_some() }).await;
    let reply = reminder().unwrap();
    let text = reply.body["text"].as_str().unwrap();
    assert!(text.contains("zoe@example.com"), "{text}");
    assert!(!text.contains("<at>"), "{text}");
    assert!(reply.body.get("entities").is_none(), "{}", reply.body);
}
