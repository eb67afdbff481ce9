//! Escalation through Teams: a request still pending `escalate_after`
//! after it was made has the rule's `escalate_to` added, once, to the
//! people who may approve it; the required count stays.

use serde_json::json;
use std::time::Duration;

use crate::bot::*;

/// Dave is named only by escalation; 6s leaves his first click well before
/// it, even on a loaded machine.
const ESCALATING: &str = "groups:\n  oncall: [user:dave@example.com]\nrules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    escalate_after: 6s\n    escalate_to: [group:oncall]\n";

async fn escalations(t: &TeamsApp, id: &str) -> usize {
    t.app
        .audit_kinds(id)
        .await
        .iter()
        .filter(|k| *k == "request.escalated")
        .count()
}

#[tokio::test]
async fn a_person_named_only_by_escalation_may_approve_after_it_and_not_before() {
    let t = spawn_teams_with_policy(ESCALATING).await;
    let (agent, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap().to_string();

    let card = t.click("dave", "approve", &request, None).await;
    assert!(card_text(&card).contains("not one of the approvers"));
    assert_eq!(escalations(&t, &id).await, 0, "not yet due");

    eventually("the request to escalate", || async {
        escalations(&t, &id).await == 1
    })
    .await;
    t.bf.wait_for("the card to say it escalated", |calls| {
        calls
            .iter()
            .filter(|c| c.is_update())
            .map(|c| card_text(c.card()))
            // The card's facts are text runs: the label, then its value.
            .any(|text| text.contains("Escalated to \noncall at 20"))
    })
    .await;
    let card = t.click("dave", "approve", &request, None).await;
    assert!(
        card_text(&card).contains("Approved"),
        "{}",
        card_text(&card)
    );
    assert_eq!(t.app.status_of(&agent, &id).await, "approved");
    assert_eq!(escalations(&t, &id).await, 1, "escalated once");
}

#[tokio::test]
async fn a_request_decided_before_escalate_after_never_escalates() {
    let t = spawn_teams_with_policy(ESCALATING).await;
    let (_, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap().to_string();
    t.click("bob", "approve", &request, None).await;
    tokio::time::sleep(Duration::from_millis(7500)).await;
    assert_eq!(escalations(&t, &id).await, 0);
}

const TOLD: &str = "groups:\n  oncall: [user:dave@example.com]\nrules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    escalate_after: 1s\n    escalate_to: [group:oncall]\n    escalate_conversation: \"19:oncall@thread.tacv2\"\n";

#[tokio::test]
async fn an_escalation_is_announced_in_the_rules_escalate_conversation_mentioning_who_was_added() {
    let t = spawn_teams_with_policy(TOLD).await;
    let agent = t.app.agent().await;
    let mut body = crate::helpers::export_request();
    body["summary"] = json!("**APPROVED** <at>General</at> [click](https://evil)");
    let request = t.app.create(&agent, body).await;
    let id = request["id"].as_str().unwrap().to_string();

    let calls =
        t.bf.wait_for("the notice in the oncall conversation", |calls| {
            calls
                .iter()
                .any(|c| c.is_post() && c.conversation() == "19:oncall@thread.tacv2")
        })
        .await;
    let notice = calls
        .iter()
        .find(|c| c.is_post() && c.conversation() == "19:oncall@thread.tacv2")
        .unwrap();
    let text = notice.body["text"].as_str().unwrap();
    for shown in [
        "Escalated",
        "oncall may now decide it too",
        "<at>dave</at>",
        &id,
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
    // Dave is in the conversation: a real mention, so Teams notifies him.
    assert_eq!(notice.body["entities"][0]["mentioned"]["id"], "29:dave");
    // The agent's summary is shown, inert: no emphasis, mention or link.
    for live in ["**APPROVED**", "<at>General</at>", "[click](https://evil)"] {
        assert!(!text.contains(live), "{live} in {text}");
    }

    eventually("the notice audited", || async {
        t.app
            .audit_kinds(&id)
            .await
            .iter()
            .any(|k| k == "teams.escalation_posted")
    })
    .await;
    let (_, data) = t
        .app
        .events_of(&id, "teams.escalation_posted")
        .await
        .remove(0);
    assert_eq!(data["conversation"], "19:oncall@thread.tacv2");
    assert_eq!(data["mentioned"], json!(["user:dave@example.com"]));
}
