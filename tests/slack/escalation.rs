//! Escalation through Slack: a request still pending `escalate_after`
//! after it was made has the rule's `escalate_to` added, once, to the
//! people who may approve it; the required count stays.

use std::time::Duration;

use crate::helpers::*;
use crate::support::*;

const APPROVE: &str = "countersign_approve";

/// Dan is named only by escalation; 4s leaves his first click well before it.
const ESCALATING: &str = "groups:\n  oncall: [user:dan@example.com]\nrules:\n  - name: exports\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    escalate_after: 4s\n    escalate_to: [group:oncall]\n";

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
    let shown: serde_json::Value = t
        .app
        .get(&agent, &format!("/v1/approvals/{id}"))
        .await
        .json()
        .await
        .unwrap();
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
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(t.count_kind(&id, "request.escalated").await, 0);
}
