//! Agent text, the JSON part: numbers are kept exactly and duplicate keys
//! are refused, so two different bodies never hash or deduplicate as one.

use serde_json::Value;

use crate::helpers::*;

const THIRTY_DIGITS: &str = "123456789012345678901234567890";
/// Differs from THIRTY_DIGITS in the last digit; the same f64.
const THIRTY_DIGITS_PLUS_ONE: &str = "123456789012345678901234567891";

fn body_with_rows(rows: &str) -> String {
    format!(
        r#"{{"action":"db.export","resource":"prod/customers","summary":"Export","details":{{"rows":{rows}}}}}"#
    )
}

async fn post_raw(
    app: &TestApp,
    token: &str,
    path: &str,
    body: String,
    idempotency_key: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_thirty_digit_integer_in_details_round_trips_exactly_and_binds_its_own_hash() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let res = post_raw(
        &app,
        &agent,
        "/v1/approvals",
        body_with_rows(THIRTY_DIGITS),
        None,
    )
    .await;
    assert_eq!(res.status(), 201);
    let exact: Value = res.json().await.unwrap();
    let id = exact["id"].as_str().unwrap();

    let text = app
        .get(&agent, &format!("/v1/approvals/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(r#""rows":{THIRTY_DIGITS}"#)),
        "GET returned {text}"
    );

    let res = post_raw(
        &app,
        &agent,
        "/v1/approvals",
        body_with_rows(THIRTY_DIGITS_PLUS_ONE),
        None,
    )
    .await;
    assert_eq!(res.status(), 201);
    let other: Value = res.json().await.unwrap();
    assert_ne!(
        exact["payload_sha256"], other["payload_sha256"],
        "two different numbers must not bind to one payload hash"
    );
}

#[tokio::test]
async fn a_body_with_a_duplicate_key_is_a_400_naming_it_and_nothing_is_created() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let events_before = app.count("audit_events").await;
    let body = r#"{"action":"db.export","resource":"prod/customers","summary":"Export","details":{"a":1,"a":2}}"#;
    let res = post_raw(&app, &agent, "/v1/approvals", body.into(), None).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["detail"], "duplicate key 'a' at details");

    let body = r#"{"action":"db.export","resource":"staging/x","resource":"prod/customers","summary":"Export"}"#;
    let res = post_raw(&app, &agent, "/v1/approvals", body.into(), None).await;
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["detail"], "duplicate key 'resource' at the top level");

    assert_eq!(app.count("approval_requests").await, 0);
    assert_eq!(app.count("audit_events").await, events_before);
}

#[tokio::test]
async fn a_decision_with_a_duplicate_verdict_is_a_400_and_records_nothing() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let created = app.create_default(&agent).await;
    let id = created["id"].as_str().unwrap();
    let body = r#"{"verdict":"deny","comment":"no","verdict":"approve"}"#;
    let res = post_raw(
        &app,
        &bob,
        &format!("/v1/approvals/{id}/decisions"),
        body.into(),
        None,
    )
    .await;
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["detail"], "duplicate key 'verdict' at the top level");
    assert_eq!(app.count("decisions").await, 0);
    assert_eq!(app.status_of(&agent, id).await, "pending");
}

#[tokio::test]
async fn an_idempotent_replay_with_another_spelling_of_a_number_is_another_body() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let first = post_raw(
        &app,
        &agent,
        "/v1/approvals",
        body_with_rows("1e2"),
        Some("k1"),
    )
    .await;
    assert_eq!(first.status(), 201);
    // Other spacing, same spelling: the same request.
    let again = post_raw(
        &app,
        &agent,
        "/v1/approvals",
        body_with_rows("1e2").replace(',', ", "),
        Some("k1"),
    )
    .await;
    assert_eq!(again.status(), 200);
    // 100.0 is the same f64 as 1e2, but not the same body.
    let other = post_raw(
        &app,
        &agent,
        "/v1/approvals",
        body_with_rows("100.0"),
        Some("k1"),
    )
    .await;
    assert_eq!(other.status(), 409);
    // And digits beyond f64 are never one body either.
    let a = post_raw(
        &app,
        &agent,
        "/v1/approvals",
        body_with_rows(THIRTY_DIGITS),
        Some("k2"),
    )
    .await;
    assert_eq!(a.status(), 201);
    let b = post_raw(
        &app,
        &agent,
        "/v1/approvals",
        body_with_rows(THIRTY_DIGITS_PLUS_ONE),
        Some("k2"),
    )
    .await;
    assert_eq!(b.status(), 409);
    assert_eq!(app.count("approval_requests").await, 2);
}
