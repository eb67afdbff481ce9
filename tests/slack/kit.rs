//! What Slack does exactly as Teams does, because both use the channel kit
//! (`countersign::channels::kit`): the same tests stand in
//! `tests/teams/kit.rs`.

use serde_json::json;

use crate::helpers::*;
use crate::support::*;

const POLICY: &str = "groups:\n  auditors: [user:carol@example.com]\nrules: []\n";
const DENY: &str = "countersign_deny";

/// Waits until every outbox row is done.
async fn outbox_settled(t: &SlackTest) {
    eventually("every outbox row to be done", || async {
        t.app.outbox().await.iter().all(|e| e.done_at.is_some())
    })
    .await;
}

#[tokio::test]
async fn a_second_post_of_a_request_already_posted_is_not_made() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;
    t.app.enqueue(&["slack.post"], &id).await;
    outbox_settled(&t).await;
    assert_eq!(t.fake.successes("chat.postMessage").len(), 1);
    assert_eq!(t.count_kind(&id, "slack.posted").await, 1);
}

#[tokio::test]
async fn an_update_with_a_newer_one_queued_behind_it_is_skipped() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;
    outbox_settled(&t).await;
    let before = t.fake.successes("chat.update").len();
    t.app.enqueue(&["slack.update", "slack.update"], &id).await;
    outbox_settled(&t).await;
    assert_eq!(
        t.fake.successes("chat.update").len(),
        before + 1,
        "the newer update shows everything the older one would"
    );
}

#[tokio::test]
async fn a_long_summary_is_cut_at_the_limit_every_channel_shares() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let limit = countersign::channels::text::Limit::Summary.chars();
    let mut body = export_request();
    body["summary"] = json!("x".repeat(limit + 234));
    let (id, post) = t.create_posted(&agent, body).await;
    let shown = texts(&post);
    assert!(
        shown.contains(&format!(
            "{}… (234 more characters hidden: /audit {id} shows all)",
            "x".repeat(limit)
        )),
        "{shown}"
    );
    assert!(!shown.contains(&"x".repeat(limit + 1)));
}

#[tokio::test]
async fn a_timeline_describes_a_denial_as_every_channel_does() {
    let t = spawn_slack(Some(POLICY)).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    t.click(BOB, DENY, &button(&post, DENY).unwrap()).await;
    let opened = t.fake.wait_for("views.open", 1).await.remove(0);
    t.submit_denial(BOB, &opened, "freeze").await;
    eventually("the denial", || async { t.status(&id).await == "denied" }).await;
    let answer = t.audit(CAROL, &id).await;
    let shown = answer["blocks"].to_string();
    assert!(shown.contains("via slack · “freeze”"), "{shown}");
}

#[tokio::test]
async fn only_an_auditor_makes_the_service_look_up_a_mentioned_person() {
    let t = spawn_slack(Some(POLICY)).await;
    let lookups_of = |user: &str| {
        t.fake
            .calls("users.info")
            .iter()
            .filter(|c| c.body["user"] == user)
            .count()
    };
    let refused = t.audit(BOB, &format!("<@{DAN}>")).await;
    assert!(
        refused["text"]
            .as_str()
            .unwrap()
            .contains("not in the policy's auditors group"),
        "{refused}"
    );
    assert_eq!(
        lookups_of(DAN),
        0,
        "a non-auditor cannot make us resolve Dan"
    );
    t.audit(CAROL, &format!("<@{DAN}>")).await;
    assert_eq!(lookups_of(DAN), 1);
}

#[tokio::test]
async fn the_person_an_agent_acted_for_is_told_the_outcome_in_a_direct_message() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    t.click(
        BOB,
        "countersign_approve",
        &button(&post, "countersign_approve").unwrap(),
    )
    .await;
    eventually("the notice to Alice", || async {
        t.fake
            .successes("chat.postMessage")
            .iter()
            .any(|c| c.body["channel"] == ALICE)
    })
    .await;
    let notice = t
        .fake
        .successes("chat.postMessage")
        .into_iter()
        .find(|c| c.body["channel"] == ALICE)
        .unwrap();
    let text = notice.body["text"].as_str().unwrap();
    for shown in [
        "Approved",
        "db.export",
        "Decided by",
        "bob@example.com",
        &id,
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
    eventually("the notice audited", || async {
        t.count_kind(&id, "slack.notified").await == 1
    })
    .await;
    let (_, data) = t.app.events_of(&id, "slack.notified").await.remove(0);
    assert_eq!(data["to"], "user:alice@example.com");
}

#[tokio::test]
async fn a_rule_can_keep_the_outcome_from_the_person_an_agent_acted_for() {
    let policy = "rules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    notify_on_behalf_of: false\n";
    let t = spawn_slack(Some(policy)).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    t.click(
        BOB,
        "countersign_approve",
        &button(&post, "countersign_approve").unwrap(),
    )
    .await;
    t.wait_update("approved").await;
    outbox_settled(&t).await;
    assert!(
        !t.fake
            .successes("chat.postMessage")
            .iter()
            .any(|c| c.body["channel"] == ALICE)
    );
    assert_eq!(t.count_kind(&id, "slack.notified").await, 0);
}

const REMINDING: &str = "rules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    remind_every: 1s\n    remind_max: 2\n";

#[tokio::test]
async fn approvers_are_reminded_in_the_thread_at_most_remind_max_times() {
    let t = spawn_slack(Some(REMINDING)).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;
    let ts = t.app.chat_message(&id, "slack").await.unwrap().message_id;
    let in_thread = || {
        t.fake
            .successes("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["thread_ts"] == ts.as_str())
            .collect::<Vec<_>>()
    };
    eventually("two reminders", || async { in_thread().len() == 2 }).await;
    let first = in_thread()[0].body["text"].as_str().unwrap().to_string();
    assert!(first.contains("Reminder 1"), "{first}");
    assert!(
        first.contains("bob@example.com"),
        "names who may decide: {first}"
    );
    assert_eq!(in_thread()[0].body["channel"], CHANNEL);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(in_thread().len(), 2, "remind_max is the most");
    assert_eq!(t.count_kind(&id, "request.reminded").await, 2);
    assert_eq!(t.count_kind(&id, "slack.reminded").await, 2);
}
