//! Escalation through Slack: a request still pending `escalate_after`
//! after it was made has the rule's `escalate_to` added, once, to the
//! people who may approve it; the required count stays.

use serde_json::json;
use std::time::Duration;

use crate::helpers::*;
use crate::support::*;

const APPROVE: &str = "countersign_approve";

/// Dan is named only by escalation; 6s leaves his first click well before
/// it, even on a loaded machine.
const ESCALATING: &str = "groups:\n  oncall: [user:dan@example.com]\nrules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    escalate_after: 6s\n    escalate_to: [group:oncall]\n";

#[tokio::test]
async fn a_person_named_only_by_escalation_may_approve_after_it_and_not_before() {
    let t = spawn_slack(Some(ESCALATING)).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let value = button(&post, APPROVE).unwrap();

    t.click(DAN, APPROVE, &value).await;
    let told = t.ephemeral_to(DAN).await;
    assert!(told.contains("not one of the approvers"), "{told}");
    assert_eq!(
        t.count_kind(&id, "request.escalated").await,
        0,
        "not yet due"
    );
    assert_eq!(t.status(&id).await, "pending");

    eventually("the request to escalate", || async {
        t.count_kind(&id, "request.escalated").await == 1
    })
    .await;
    t.click(DAN, APPROVE, &value).await;
    t.wait_update("approved").await;
    assert_eq!(t.status(&id).await, "approved");
    assert_eq!(t.decisions(&id).await, 1, "one approval was still enough");
    assert_eq!(
        t.count_kind(&id, "request.escalated").await,
        1,
        "escalated once"
    );
    let verified = t.cli(&["audit", "verify"]).await;
    assert!(verified.status.success(), "{verified:?}");
}

const QUICK: &str = "groups:\n  oncall: [user:dan@example.com]\nrules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvals: 2\n    approvers: [user:bob@example.com, user:carol@example.com]\n    escalate_after: 1s\n    escalate_to: [group:oncall]\n";

#[tokio::test]
async fn a_request_escalates_once_and_keeps_its_required_count() {
    let t = spawn_slack(Some(QUICK)).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;
    eventually("the request to escalate", || async {
        t.count_kind(&id, "request.escalated").await == 1
    })
    .await;
    let update = t.wait_update("escalated to oncall at").await;
    assert!(
        texts(&update).contains("Escalated to oncall at 20"),
        "{}",
        texts(&update)
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(t.count_kind(&id, "request.escalated").await, 1, "once only");
    let shown: serde_json::Value = t.app.approval(&agent, &id).await;
    assert_eq!(shown["required_approvals"], 2, "the count does not change");
    let approvers: Vec<&str> = shown["approvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(approvers.contains(&"user:dan@example.com"), "{approvers:?}");
    assert_eq!(shown["escalations"][0]["to"], "oncall");
    assert_eq!(shown["escalations"][0]["added"][0], "user:dan@example.com");
}

#[tokio::test]
async fn a_request_decided_before_escalate_after_never_escalates() {
    let t = spawn_slack(Some(ESCALATING)).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    t.click(BOB, APPROVE, &button(&post, APPROVE).unwrap())
        .await;
    t.wait_update("approved").await;
    tokio::time::sleep(Duration::from_millis(7500)).await;
    assert_eq!(t.count_kind(&id, "request.escalated").await, 0);
}

const TOLD: &str = "groups:\n  oncall: [user:dan@example.com]\nrules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    escalate_after: 1s\n    escalate_to: [group:oncall]\n    escalate_channel: C0ONCALL\n";

#[tokio::test]
async fn an_escalation_is_announced_in_the_rules_escalate_channel_mentioning_who_was_added() {
    let t = spawn_slack(Some(TOLD)).await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["summary"] = json!("<!channel> *urgent* export, ping <@U0BOB>");
    let (id, _) = t.create_posted(&agent, body).await;

    let in_oncall = || {
        t.fake
            .successes("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "C0ONCALL")
    };
    eventually("the notice in C0ONCALL", || async { in_oncall().is_some() }).await;
    let notice = in_oncall().unwrap();
    let text = notice.body["text"].as_str().unwrap();
    for shown in [
        "Escalated: db.export on prod/customers",
        "oncall may now decide it too",
        // Dan never used Slack here: found by his e-mail address.
        "<@U0DAN>",
        &id,
        &format!("<#{CHANNEL}>"),
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
    // The agent's summary is shown, inert: no broadcast, no mention, no bold.
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<@U0BOB>"), "{text}");
    assert!(!text.contains("*urgent*"), "{text}");

    eventually("the notice audited", || async {
        t.count_kind(&id, "slack.escalation_posted").await == 1
    })
    .await;
    let (_, data) = t
        .app
        .events_of(&id, "slack.escalation_posted")
        .await
        .remove(0);
    assert_eq!(data["channel"], "C0ONCALL");
    assert_eq!(data["mentioned"], json!(["user:dan@example.com"]));
    let verified = t.cli(&["audit", "verify"]).await;
    assert!(verified.status.success(), "{verified:?}");
}

#[tokio::test]
async fn without_an_escalate_channel_nothing_is_announced() {
    let t = spawn_slack(Some(QUICK)).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;
    t.wait_update("escalated to oncall at").await;
    // The escalation's write queued everything it will ever send.
    let kinds: Vec<String> = t.app.outbox().await.into_iter().map(|e| e.kind).collect();
    assert!(!kinds.iter().any(|k| k == "slack.escalate"), "{kinds:?}");
    assert_eq!(
        t.fake.successes("chat.postMessage").len(),
        1,
        "only the request's own message"
    );
    assert_eq!(t.count_kind(&id, "slack.escalation_posted").await, 0);
}
