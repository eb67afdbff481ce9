//! Policy bypass by spelling: the rule that decides is the rule the
//! canonical resource meets, and every other spelling is refused (422,
//! naming the problem) before anything is written.

use serde_json::{Value, json};

use crate::helpers::*;

/// Staging is open; production needs two named people.
const POLICY: &str = r#"
groups:
  dba: [user:bob@example.com, user:carol@example.com]
rules:
  - name: staging-open
    resource: "staging/**"
    effect: allow
  - name: prod-two-people
    resource: "prod/**"
    effect: require_approval
    approvals: 2
    approvers: [group:dba]
"#;

fn asking_for(resource: &str) -> Value {
    let mut body = export_request();
    body["resource"] = json!(resource);
    body
}

async fn problem(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    (status, p["detail"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn every_spelling_of_prod_from_the_issue_is_refused_naming_the_problem_and_nothing_is_written()
 {
    let app = spawn_with_policy(POLICY).await;
    let agent = app.agent().await;
    let events_before = app.count("audit_events").await;
    let cases = [
        ("staging/../prod/customers", "resource has a '..' segment"),
        ("./prod/customers", "resource has a '.' segment"),
        ("/prod/customers", "resource starts with '/'"),
        (
            "\u{200b}prod/customers",
            "resource contains U+200B ZERO WIDTH SPACE (a format character)",
        ),
        (" prod/customers", "resource starts with whitespace"),
        ("prod/customers/", "resource ends with '/'"),
        ("prod//customers", "resource has an empty segment"),
        ("prod/customers\u{202e}", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("prod/\u{1}customers", "U+0001 (a control character)"),
        ("prod/cafe\u{301}", "not in Unicode NFC form"),
    ];
    for (resource, want) in cases {
        let res = app
            .post_json(&agent, "/v1/approvals", &asking_for(resource))
            .await;
        let (status, detail) = problem(res).await;
        assert_eq!(status, 422, "{resource:?}: {detail}");
        assert!(detail.contains(want), "{resource:?}: {detail}");
    }
    assert_eq!(app.count("approval_requests").await, 0);
    assert_eq!(app.count("audit_events").await, events_before);
    assert_eq!(app.count("outbox").await, 0);
}

#[tokio::test]
async fn the_canonical_resource_meets_the_rule_written_for_it() {
    let app = spawn_with_policy(POLICY).await;
    let agent = app.agent().await;
    let prod = app.create(&agent, asking_for("prod/customers")).await;
    assert_eq!(prod["status"], "pending");
    assert_eq!(prod["policy"]["rule"], "prod-two-people");
    assert_eq!(prod["required_approvals"], 2);
    let staging = app.create(&agent, asking_for("staging/customers")).await;
    assert_eq!(staging["status"], "approved");
    assert_eq!(staging["policy"]["rule"], "staging-open");
}

#[tokio::test]
async fn actions_that_are_not_canonical_are_refused_and_nothing_is_written() {
    let app = spawn_with_policy(POLICY).await;
    let agent = app.agent().await;
    for action in [
        "db..export",
        ".db.export",
        "db.export.",
        "db.\u{200b}export",
    ] {
        let mut body = export_request();
        body["action"] = json!(action);
        let (status, detail) = problem(app.post_json(&agent, "/v1/approvals", &body).await).await;
        assert_eq!(status, 422, "{action:?}: {detail}");
        assert!(detail.starts_with("action"), "{action:?}: {detail}");
    }
    assert_eq!(app.count("approval_requests").await, 0);
}

#[tokio::test]
async fn a_policy_whose_resource_glob_is_not_canonical_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "rules:\n  - name: sneaky\n    resource: \"staging/../prod/**\"\n    effect: allow\n",
    )
    .unwrap();
    let mut settings = settings_in(dir.path());
    settings.policy = Some(path);
    let err = countersign::startup::Server::build(settings)
        .await
        .err()
        .expect("the policy is refused");
    let text = format!("{err:#}");
    assert!(text.contains("'..' segment"), "{text}");
    assert!(text.contains("sneaky"), "{text}");
}
