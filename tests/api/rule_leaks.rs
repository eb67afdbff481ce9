//! Decision rules that leaked (issue 8): the owner of a deciding key is
//! involved too, the deadline is judged at commit time, payload binding is
//! recorded, revoking a key cancels what it asked for, and `admin` does not
//! let an agent cancel others' requests.

use countersign::domain::{Principal, Verdict};
use countersign::error::AppError;
use countersign::service::approvals::DecisionInput;
use countersign::store::keys::{self, NewKey, parse_scopes};
use serde_json::{Value, json};

use crate::helpers::*;

/// A request's audit events as (kind, data), oldest first.
async fn events(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    let mut events = countersign::store::trail::query(
        &app.app.store,
        &countersign::store::trail::AuditFilter {
            request_id: Some(id.parse().unwrap()),
            limit: 500,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    events.reverse();
    events
        .into_iter()
        .map(|e| (e.kind, serde_json::from_str(&e.data).unwrap()))
        .collect()
}

async fn problem(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn a_key_for_mallory_owned_by_alice_cannot_approve_a_request_made_for_alice() {
    let app = spawn_app().await;
    let agent = app.agent().await; // acts for alice (export_request)
    let mallory = app
        .key(
            "user:mallory@example.com",
            Some("user:alice@example.com"),
            "decide,read",
        )
        .await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, p) = problem(app.decide(&mallory, &id, "approve", None).await).await;
    assert_eq!(status, 403);
    assert_eq!(p["type"], "urn:countersign:problem:self_approval");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("user:alice@example.com"),
        "{p}"
    );
    assert_eq!(app.status_of(&agent, &id).await, "pending");
    assert_eq!(app.count("decisions").await, 0);
    let (kind, data) = events(&app, &id).await.pop().unwrap();
    assert_eq!(kind, "decision.blocked");
    assert_eq!(data["key_owner"], "user:alice@example.com");
}

#[tokio::test]
async fn a_key_owned_by_the_owner_of_the_requesting_key_cannot_approve() {
    let app = spawn_app().await;
    let agent = app.agent().await; // owned by olivia
    let proxy = app
        .key(
            "user:proxy@example.com",
            Some("user:olivia@example.com"),
            "decide",
        )
        .await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = problem(app.decide(&proxy, &id, "deny", Some("no")).await).await;
    assert_eq!(status, 403);
    assert_eq!(app.status_of(&agent, &id).await, "pending");
}

#[tokio::test]
async fn two_keys_owned_by_the_same_person_do_not_make_two_of_two() {
    let app = spawn_with_policy(
        "rules:\n  - name: two\n    action: db.export\n    effect: require_approval\n    approvals: 2\n",
    )
    .await;
    let agent = app.agent().await;
    let mallory = app
        .key(
            "user:mallory@example.com",
            Some("user:victor@example.com"),
            "decide,read",
        )
        .await;
    let trent = app
        .key(
            "user:trent@example.com",
            Some("user:victor@example.com"),
            "decide,read",
        )
        .await;
    let victor = app.human("victor@example.com").await;
    let carol = app.human("carol@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.decide(&mallory, &id, "approve", None).await.status(),
        200
    );
    let (status, p) = problem(app.decide(&trent, &id, "approve", None).await).await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["type"], "urn:countersign:problem:same_person");
    // Nor does Victor himself count again.
    let (status, _) = problem(app.decide(&victor, &id, "approve", None).await).await;
    assert_eq!(status, 409);
    assert_eq!(app.status_of(&agent, &id).await, "pending");
    // Someone else completes the quorum.
    let res = app.decide(&carol, &id, "approve", None).await;
    assert_eq!(res.status(), 200);
    let a: Value = res.json().await.unwrap();
    assert_eq!(a["status"], "approved");
    assert_eq!(a["approvals"].as_array().unwrap().len(), 2);
}

/// No sweeper runs here: the server is built but not run, so the only thing
/// that can refuse the late decision is the rule judged at commit time. The
/// request's deadline is one second; the decision comes after it, with the
/// row still saying `pending` (deterministic: nothing else touches it).
#[tokio::test]
async fn a_decision_committed_after_the_deadline_is_refused_as_expired_whatever_the_row_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_in(dir.path());
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: quick\n    effect: require_approval\n    expires_in: 1s\n",
    )
    .unwrap();
    settings.policy = Some(policy);
    let server = countersign::startup::Server::build(settings).await.unwrap();
    let app = server.app.clone();
    let (_, token) = keys::create(
        &app.store,
        "test",
        NewKey {
            principal: Principal::parse("agent:deploy-bot").unwrap(),
            owner: None,
            scopes: parse_scopes("request").unwrap(),
            name: None,
        },
    )
    .await
    .unwrap();
    let key = keys::authenticate(&app.store, &token).await.unwrap();
    let content = countersign::domain::RequestContent {
        action: countersign::domain::Action::parse("db.export").unwrap(),
        resource: "prod/customers".into(),
        summary: "Export".into(),
        justification: None,
        details: Default::default(),
        risk: countersign::domain::Risk::High,
        on_behalf_of: None,
    };
    let created = match app
        .create_request(
            &key,
            countersign::service::approvals::NewRequest {
                content,
                expires_in: None,
                callback_url: None,
                idempotency_key: None,
                body_hash: "x".into(),
            },
        )
        .await
        .unwrap()
    {
        countersign::service::approvals::Created::New(a) => a,
        countersign::service::approvals::Created::Replayed(_) => unreachable!(),
    };
    let deadline = countersign::clock::parse(&created.expires_at).unwrap();
    // Past the deadline by a few ms, as in the issue.
    let wait = (deadline - countersign::clock::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(3)).await;

    let result = app
        .decide(DecisionInput {
            request_id: created.id,
            who: Principal::parse("user:bob@example.com").unwrap(),
            verdict: Verdict::Approve,
            comment: None,
            channel: "slack",
            payload_sha256: Some(created.payload_sha256.clone()),
            confirmation: None,
            signed_in_at: None,
        })
        .await;
    let Err(AppError::Refused(refusal)) = result else {
        panic!("a late approval counted: {result:?}")
    };
    assert_eq!(refusal.code(), "expired");
    assert_eq!(
        AppError::Refused(refusal).status_code(),
        reqwest::StatusCode::CONFLICT
    );
    let after = countersign::store::requests::get(&app.store, created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, countersign::domain::Status::Pending);
    assert!(after.decisions.is_empty());
    let blocked: Vec<Value> = countersign::store::trail::query(
        &app.store,
        &countersign::store::trail::AuditFilter {
            request_id: Some(created.id),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|e| e.kind == "decision.blocked")
    .map(|e| serde_json::from_str(&e.data).unwrap())
    .collect();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["reason"], "expired");
}

#[tokio::test]
async fn an_api_decision_records_whether_it_was_bound_to_the_payload() {
    let app = spawn_with_policy(
        "rules:\n  - name: two\n    action: db.export\n    effect: require_approval\n    approvals: 2\n",
    )
    .await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let carol = app.human("carol@example.com").await;
    let created = app.create_default(&agent).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.decide(&bob, id, "approve", None).await.status(), 200);
    let body = json!({ "verdict": "approve", "payload_sha256": created["payload_sha256"] });
    let res = app
        .post_json(&carol, &format!("/v1/approvals/{id}/decisions"), &body)
        .await;
    assert_eq!(res.status(), 200);
    let approvals: Vec<Value> = events(&app, id)
        .await
        .into_iter()
        .filter(|(k, _)| k == "decision.approve")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(approvals[0]["bound"], false);
    assert_eq!(approvals[1]["bound"], true);
}

#[tokio::test]
async fn a_decision_on_another_payload_is_a_409_audited_as_blocked() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({ "verdict": "approve", "payload_sha256": "0".repeat(64) });
    let (status, p) = problem(
        app.post_json(&bob, &format!("/v1/approvals/{id}/decisions"), &body)
            .await,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(p["type"], "urn:countersign:problem:payload_mismatch");
    let (kind, data) = events(&app, &id).await.pop().unwrap();
    assert_eq!(kind, "decision.blocked");
    assert_eq!(data["reason"], "payload_mismatch");
    assert_eq!(app.status_of(&agent, &id).await, "pending");
}

#[tokio::test]
async fn revoking_a_key_cancels_its_pending_requests_in_the_same_write() {
    let app = spawn_app().await;
    let (key_id, agent) = keys::create(
        &app.app.store,
        "test",
        NewKey {
            principal: Principal::parse("agent:leaky-bot").unwrap(),
            owner: None,
            scopes: parse_scopes("request,read").unwrap(),
            name: None,
        },
    )
    .await
    .unwrap();
    let other = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let mine = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let not_mine = app.create_default(&other).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = app.cli(&["keys", "revoke", &key_id.to_string()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelled 1 pending requests"));

    let a: Value = app.approval(&bob, &mine).await;
    assert_eq!(a["status"], "cancelled");
    assert_eq!(a["reason"], "key revoked");
    let (kind, data) = events(&app, &mine).await.pop().unwrap();
    assert_eq!(kind, "request.cancelled");
    assert_eq!(data["reason"], "key revoked");
    // Nothing the revoked key asked for can be approved any more.
    let (status, p) = problem(app.decide(&bob, &mine, "approve", None).await).await;
    assert_eq!(status, 409);
    assert_eq!(p["type"], "urn:countersign:problem:already_final");
    // Other keys' requests are untouched.
    assert_eq!(app.status_of(&bob, &not_mine).await, "pending");
}

#[tokio::test]
async fn an_admin_scoped_agent_cannot_cancel_another_requesters_request_but_an_admin_person_can() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let ops_bot = app.key("agent:ops-bot", None, "request,admin").await;
    let admin = app.key("user:root@example.com", None, "admin").await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .client
        .post(app.url(&format!("/v1/approvals/{id}/cancel")))
        .bearer_auth(&ops_bot)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(app.status_of(&agent, &id).await, "pending");
    // Its own requests it cancels as ever.
    let own = app.create_default(&ops_bot).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .client
        .post(app.url(&format!("/v1/approvals/{own}/cancel")))
        .bearer_auth(&ops_bot)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .post(app.url(&format!("/v1/approvals/{id}/cancel")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.status_of(&agent, &id).await, "cancelled");
}
