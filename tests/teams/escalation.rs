//! Escalation through Teams: a request still pending `escalate_after`
//! after it was made has the rule's `escalate_to` added, once, to the
//! people who may approve it; the required count stays.

use std::time::Duration;

use crate::bot::*;

/// Dave is named only by escalation; 4s leaves his first click well before it.
const ESCALATING: &str = "groups:\n  oncall: [user:dave@example.com]\nrules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    escalate_after: 4s\n    escalate_to: [group:oncall]\n";

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
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(escalations(&t, &id).await, 0);
}
