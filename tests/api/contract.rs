//! `/openapi.json` says what the server does: where each parameter goes,
//! the limits the server enforces, every status it answers, and no
//! reference to a schema it does not define. (.ci/contract runs
//! schemathesis against the same document.)

use serde_json::Value;

use crate::helpers::{spawn_app, spawn_with};

async fn document(app: &crate::helpers::TestApp) -> Value {
    app.client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn param<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} documents {name}"))
}

#[tokio::test]
async fn query_parameters_are_documented_in_the_query_as_optional_with_the_limits_the_server_enforces()
 {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (path, name, min, max) in [
        ("/v1/approvals", "limit", 1, 200),
        ("/v1/audit", "limit", 1, 500),
        ("/v1/approvals/{id}", "wait", 0, 60),
    ] {
        let p = param(&doc, path, "get", name);
        assert_eq!(p["in"], "query", "{path} {name}: {p}");
        assert_eq!(p["required"], false, "{path} {name}: {p}");
        assert_eq!(p["schema"]["minimum"], min, "{path} {name}: {p}");
        assert_eq!(p["schema"]["maximum"], max, "{path} {name}: {p}");
    }
    // Above the documented maximum is refused, not clamped.
    let agent = app.agent().await;
    let res = app.get(&agent, "/v1/approvals?limit=201").await;
    assert_eq!(res.status(), 400);
    let a = app.create_default(&agent).await;
    let res = app
        .get(
            &agent,
            &format!("/v1/approvals/{}?wait=61", a["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn the_documented_wait_maximum_is_the_configured_max_wait() {
    let app = spawn_with(|s| s.max_wait = std::time::Duration::from_secs(5)).await;
    let doc = document(&app).await;
    assert_eq!(
        param(&doc, "/v1/approvals/{id}", "get", "wait")["schema"]["maximum"],
        5
    );
}

#[tokio::test]
async fn headers_bodies_and_statuses_are_documented_as_served() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let key = param(&doc, "/v1/approvals", "post", "Idempotency-Key");
    assert_eq!(key["in"], "header");
    assert_eq!(key["schema"]["minLength"], 1);
    assert_eq!(key["schema"]["maxLength"], 255);
    let create = &doc["components"]["schemas"]["CreateApproval"]["properties"];
    assert_eq!(create["callback_url"]["format"], "uri");
    assert_eq!(create["summary"]["maxLength"], 1000);
    let decide = &doc["paths"]["/v1/approvals/{id}/decisions"]["post"]["responses"];
    for status in ["400", "413", "415", "422"] {
        assert!(decide[status].is_object(), "decisions documents {status}");
    }
    let export = &doc["paths"]["/v1/audit/export"]["get"]["responses"]["200"]["content"];
    assert!(export["text/csv"].is_object() && export["application/x-ndjson"].is_object());
    // Every $ref points at a schema the document defines.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{name} is defined"
        );
    }
}

#[tokio::test]
async fn an_idempotency_key_outside_its_documented_characters_is_a_400_and_creates_nothing() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let res = app
        .client
        .post(app.url("/v1/approvals"))
        .bearer_auth(&agent)
        .header("Idempotency-Key", "retry\tone")
        .json(&crate::helpers::export_request())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(app.count("approval_requests").await, 0);
}
