use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_human_other_than_the_requester_approves() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app.decide(&bob, &id, "approve", Some("looks fine")).await;
    assert_eq!(res.status(), 200);
    let a: Value = res.json().await.unwrap();
    assert_eq!(a["status"], "approved");
    assert_eq!(a["decided_by"], "user:bob@example.com");
    assert_eq!(a["approvals"][0]["channel"], "api");
    assert_eq!(
        app.audit_kinds(&id).await,
        [
            "request.created",
            "policy.evaluated",
            "decision.approve",
            "request.approved",
            // An approval earns a permit, issued in the same job (src/permits).
            "permit.issued"
        ]
    );
}

#[tokio::test]
async fn the_human_the_agent_acts_for_cannot_approve_and_the_attempt_is_audited() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let alice = app.human("alice@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app.decide(&alice, &id, "approve", None).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "urn:countersign:problem:self_approval");
    assert!(p["detail"].as_str().unwrap().contains("on your behalf"));
    assert_eq!(app.status_of(&agent, &id).await, "pending");
    assert_eq!(app.count("decisions").await, 0);
    assert_eq!(
        app.audit_kinds(&id).await.last().unwrap(),
        "decision.blocked"
    );
}

#[tokio::test]
async fn the_owner_of_the_requesting_key_cannot_approve_under_another_case() {
    let app = spawn_app().await;
    let agent = app.agent().await; // owned by olivia@example.com
    let olivia = app.key("user:Olivia@Example.COM", None, "decide").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app.decide(&olivia, &id, "approve", None).await;
    assert_eq!(res.status(), 403);
    assert_eq!(app.status_of(&agent, &id).await, "pending");
}

#[tokio::test]
async fn a_human_requester_cannot_approve_their_own_request() {
    let app = spawn_app().await;
    let dana = app
        .key("user:dana@example.com", None, "request,decide,read")
        .await;
    let mut body = export_request();
    body.as_object_mut().unwrap().remove("on_behalf_of");
    let id = app.create(&dana, body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.decide(&dana, &id, "approve", None).await.status(), 403);
}

#[tokio::test]
async fn agents_cannot_hold_the_decide_scope() {
    let app = spawn_app().await;
    let out = app
        .cli(&[
            "keys",
            "create",
            "--principal",
            "agent:sneaky",
            "--scopes",
            "decide",
        ])
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("decide"));
    assert_eq!(app.count("api_keys").await, 0);
}

#[tokio::test]
async fn a_key_without_the_decide_scope_cannot_decide() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.decide(&agent, &id, "approve", None).await.status(), 403);
}

const TWO_OF_SRE: &str = "groups:\n  sre: [user:bob@example.com, user:carol@example.com, user:dave@example.com]\n  dba: [user:bob@example.com]\nrules:\n  - name: prod-exports\n    action: db.export\n    effect: require_approval\n    approvals: 2\n    approvers: [group:sre, group:dba]\n";

#[tokio::test]
async fn a_quorum_of_two_needs_two_distinct_people_and_one_person_counts_once() {
    let app = spawn_with_policy(TWO_OF_SRE).await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await; // in two groups
    let bob_again = app.human("BOB@example.com").await;
    let carol = app.human("carol@example.com").await;
    let a = app.create_default(&agent).await;
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["required_approvals"], 2);

    let first: Value = app
        .decide(&bob, &id, "approve", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["status"], "pending");
    assert_eq!(first["approvals"].as_array().unwrap().len(), 1);
    let twice = app.decide(&bob_again, &id, "approve", None).await;
    assert_eq!(
        twice.status(),
        409,
        "the same person under another spelling counts once"
    );
    assert_eq!(app.status_of(&agent, &id).await, "pending");
    let second: Value = app
        .decide(&carol, &id, "approve", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["status"], "approved");
    assert_eq!(second["approvals"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn where_a_rule_names_approvers_nobody_else_decides_and_the_attempt_is_audited() {
    let app = spawn_with_policy(TWO_OF_SRE).await;
    let agent = app.agent().await;
    let eve = app.human("eve@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app.decide(&eve, &id, "approve", None).await;
    assert_eq!(res.status(), 403);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "urn:countersign:problem:not_an_approver");
    let events = countersign::store::trail::query(
        &app.app.store,
        &countersign::store::trail::AuditFilter {
            kind: Some("decision.blocked".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].data.contains("not_an_approver"));
}

#[tokio::test]
async fn one_deny_by_an_allowed_approver_denies_and_needs_a_comment() {
    let app = spawn_with_policy(TWO_OF_SRE).await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let dave = app.human("dave@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "approve", None).await;
    let no_reason = app.decide(&dave, &id, "deny", None).await;
    assert_eq!(no_reason.status(), 422);
    assert_eq!(app.status_of(&agent, &id).await, "pending");
    let res: Value = app
        .decide(&dave, &id, "deny", Some("not during the freeze"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["status"], "denied");
    assert_eq!(res["denial"]["comment"], "not during the freeze");
}

#[tokio::test]
async fn a_late_decision_is_refused_with_who_decided_and_when() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let carol = app.human("carol@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.decide(&bob, &id, "approve", None).await;
    let late = app.decide(&carol, &id, "deny", Some("too late?")).await;
    assert_eq!(late.status(), 409);
    let p: Value = late.json().await.unwrap();
    assert_eq!(p["decided_by"], "user:bob@example.com");
    assert!(p["decided_at"].is_string());
    assert_eq!(p["request_status"], "approved");
    assert_eq!(app.status_of(&agent, &id).await, "approved");
}

#[tokio::test]
async fn fifty_concurrent_decisions_end_in_exactly_one_final_transition() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tokens = vec![];
    for i in 0..50 {
        tokens.push(app.human(&format!("approver{i}@example.com")).await);
    }
    let attempts = tokens.iter().enumerate().map(|(i, t)| {
        let verdict = if i % 2 == 0 { "approve" } else { "deny" };
        app.decide(t, &id, verdict, Some("concurrent"))
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    let conflicts = results.iter().filter(|r| r.status() == 409).count();
    assert_eq!(ok, 1, "exactly one decision wins");
    assert_eq!(conflicts, 49, "every other is told it is already final");
    let final_events = app
        .audit_kinds(&id)
        .await
        .into_iter()
        .filter(|k| k == "request.approved" || k == "request.denied")
        .count();
    assert_eq!(final_events, 1);
    assert_eq!(app.count("decisions").await, 1);
}

#[tokio::test]
async fn a_decision_bound_to_another_payload_hash_is_refused() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({ "verdict": "approve", "payload_sha256": "0".repeat(64) });
    let res = app
        .post_json(&bob, &format!("/v1/approvals/{id}/decisions"), &body)
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(app.status_of(&agent, &id).await, "pending");
}

#[tokio::test]
async fn expiry_can_approve_when_the_rule_says_so() {
    let app = spawn_with_policy(
        "rules:\n  - name: lenient\n    action: db.export\n    effect: require_approval\n    expires_in: 1s\n    on_expiry: approve\n",
    )
    .await;
    let agent = app.agent().await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v: Value = app
        .get(&agent, &format!("/v1/approvals/{id}?wait=10"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "approved");
    assert!(v["reason"].as_str().unwrap().contains("approves on expiry"));
}
