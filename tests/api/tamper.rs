//! Editing the tables the API serves, behind the service's back: the rows
//! are checked against the audit events they were derived from, so a forged
//! row is neither served nor acted on, and `audit verify` names it.

use serde_json::Value;
use sqlx::Connection;

use crate::helpers::*;

/// Runs SQL on the database file as an attacker with write access would,
/// with every append-only trigger dropped first.
pub async fn tamper(db: &std::path::Path, sql: &[&str]) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for t in [
        "audit_events_no_update",
        "audit_events_no_delete",
        "audit_signatures_no_update",
        "audit_signatures_no_delete",
        "permit_redemptions_no_update",
        "permit_redemptions_no_delete",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER IF EXISTS {t}")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for s in sql {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// [`tamper`] on whichever database `app` runs on: on PostgreSQL as its
/// owner would, with the append-only triggers dropped first. For edits
/// whose SQL both dialects read alike.
pub async fn tamper_app(app: &TestApp, sql: &[&str]) {
    if !on_postgres() {
        return tamper(&app.db, sql).await;
    }
    let mut conn = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
    for (trigger, table) in [
        ("audit_events_no_update", "audit_events"),
        ("audit_events_no_truncate", "audit_events"),
        ("audit_signatures_no_update", "audit_signatures"),
        ("audit_signatures_no_truncate", "audit_signatures"),
        ("permit_redemptions_no_update", "permit_redemptions"),
        ("permit_redemptions_no_truncate", "permit_redemptions"),
    ] {
        let drop = format!("DROP TRIGGER IF EXISTS {trigger} ON {table}");
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for s in sql {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

pub fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts a 409 `integrity` problem naming the request and each field.
async fn assert_integrity(res: reqwest::Response, id: &str, fields: &[&str]) {
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "urn:countersign:problem:integrity", "{body}");
    assert_eq!(body["request_id"], id, "{body}");
    for f in fields {
        assert!(
            body["fields"].as_array().unwrap().iter().any(|v| v == f),
            "{f} not named in {body}"
        );
    }
}

/// `audit verify` exits 3 and names the request with the fields.
async fn assert_verify_names(app: &TestApp, id: &str, fields: &[&str]) {
    let out = app.cli(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stdout_json(&out));
    let v = stdout_json(&out);
    assert_eq!(v["ok"], false);
    let m = v["mismatches"]
        .as_array()
        .unwrap_or_else(|| panic!("no mismatches in {v}"))
        .iter()
        .find(|m| m["subject"] == "request" && m["id"] == id)
        .unwrap_or_else(|| panic!("request {id} not named in {v}"))
        .clone();
    for f in fields {
        assert!(
            m["fields"].as_array().unwrap().iter().any(|v| v == f),
            "{f} not named in {m}"
        );
    }
}

/// A key id no key has (a UUID, as PostgreSQL's column wants).
const NO_KEY: &str = "00000000-0000-0000-0000-000000000000";

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_denied_request_forged_to_approved_is_not_served_and_verify_names_it() {
    if !crate::helpers::sqlite_file_at_hand(
        "a_denied_request_forged_to_approved_is_not_served_and_verify_names_it",
    ) {
        return;
    }
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = id_of(&app.create_default(&agent).await);
    let res = app.decide(&bob, &id, "deny", Some("not today")).await;
    assert_eq!(res.status(), 200);

    tamper(
        &app.db,
        &[&format!(
            "UPDATE approval_requests SET status = 'approved', final_reason = 'approved by 1 of 1 required' WHERE id = '{id}'"
        )],
    )
    .await;

    assert_integrity(
        app.get(&agent, &format!("/v1/approvals/{id}")).await,
        &id,
        &["status", "reason"],
    )
    .await;
    // The long-poll answer is the same read: a forged `approved` never wakes an agent.
    assert_integrity(
        app.get(&agent, &format!("/v1/approvals/{id}?wait=1")).await,
        &id,
        &["status"],
    )
    .await;
    assert_integrity(app.get(&agent, "/v1/approvals").await, &id, &["status"]).await;
    assert_verify_names(&app, &id, &["status", "reason"]).await;
}

#[tokio::test]
async fn rewritten_decisions_are_named_and_not_served() {
    if !crate::helpers::sqlite_file_at_hand("rewritten_decisions_are_named_and_not_served") {
        return;
    }
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = id_of(&app.create_default(&agent).await);
    assert_eq!(app.decide(&bob, &id, "approve", None).await.status(), 200);

    tamper(
        &app.db,
        &[&format!(
            "UPDATE decisions SET principal = 'user:carol@example.com', comment = 'looks fine' WHERE request_id = '{id}'"
        )],
    )
    .await;

    assert_integrity(
        app.get(&agent, &format!("/v1/approvals/{id}")).await,
        &id,
        &["decisions"],
    )
    .await;
    assert_verify_names(&app, &id, &["decisions"]).await;
}

#[tokio::test]
async fn a_changed_summary_is_neither_served_nor_decided_on() {
    if !crate::helpers::sqlite_file_at_hand("a_changed_summary_is_neither_served_nor_decided_on") {
        return;
    }
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = id_of(&app.create_default(&agent).await);

    tamper(
        &app.db,
        &[&format!(
            "UPDATE approval_requests SET summary = 'Read one harmless row' WHERE id = '{id}'"
        )],
    )
    .await;

    assert_integrity(
        app.get(&agent, &format!("/v1/approvals/{id}")).await,
        &id,
        &["summary"],
    )
    .await;
    assert_integrity(
        app.decide(&bob, &id, "approve", None).await,
        &id,
        &["summary"],
    )
    .await;
    // Nothing was decided: the trail still ends at the policy outcome.
    assert_eq!(
        app.audit_kinds(&id).await,
        ["request.created", "policy.evaluated"]
    );
    assert_verify_names(&app, &id, &["summary"]).await;
}

#[tokio::test]
async fn with_key_owner_nulled_the_owner_still_cannot_approve_her_agents_request() {
    if !crate::helpers::sqlite_file_at_hand(
        "with_key_owner_nulled_the_owner_still_cannot_approve_her_agents_request",
    ) {
        return;
    }
    let app = spawn_app().await;
    // Olivia owns the agent key and holds a decide key of her own.
    let agent = app.agent().await;
    let olivia = app.human("olivia@example.com").await;
    let mut body = export_request();
    body.as_object_mut().unwrap().remove("on_behalf_of");
    let id = id_of(&app.create(&agent, body).await);

    tamper(
        &app.db,
        &[&format!(
            "UPDATE approval_requests SET key_owner = NULL WHERE id = '{id}'"
        )],
    )
    .await;

    assert_integrity(
        app.decide(&olivia, &id, "approve", None).await,
        &id,
        &["key_owner"],
    )
    .await;
    // Read from the file: the service refuses to serve the forged row.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db.display()))
        .await
        .unwrap();
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM approval_requests WHERE id = ?")
            .bind(&id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(status.as_deref(), Some("pending"));
    assert_eq!(app.count("decisions").await, 0);
    assert_verify_names(&app, &id, &["key_owner"]).await;
}

#[tokio::test]
async fn an_edited_event_behind_a_matching_row_is_caught_when_the_request_is_read() {
    if !crate::helpers::sqlite_file_at_hand(
        "an_edited_event_behind_a_matching_row_is_caught_when_the_request_is_read",
    ) {
        return;
    }
    let app = spawn_app().await;
    let agent = app.agent().await;
    let id = id_of(&app.create_default(&agent).await);
    let summary = "Export the customers table for the quarterly audit";
    // Row and event edited alike: they agree, but the event's hash no longer does.
    tamper(
        &app.db,
        &[
            &format!("UPDATE approval_requests SET summary = 'Read one row' WHERE id = '{id}'"),
            &format!(
                "UPDATE audit_events SET data = replace(data, '{summary}', 'Read one row') \
                 WHERE request_id = '{id}' AND kind = 'request.created'"
            ),
        ],
    )
    .await;
    let res = app.get(&agent, &format!("/v1/approvals/{id}")).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("event ")),
        "{body}"
    );
}

#[tokio::test]
async fn untouched_requests_in_every_state_are_served_and_verify_finds_nothing() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let approved = id_of(&app.create_default(&agent).await);
    app.decide(&bob, &approved, "approve", None).await;
    let denied = id_of(&app.create_default(&agent).await);
    app.decide(&bob, &denied, "deny", Some("no")).await;
    let cancelled = id_of(&app.create_default(&agent).await);
    let res = app
        .post_json(
            &agent,
            &format!("/v1/approvals/{cancelled}/cancel"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    app.create_default(&agent).await;
    for id in [&approved, &denied, &cancelled] {
        let res = app.get(&agent, &format!("/v1/approvals/{id}")).await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(app.get(&agent, "/v1/approvals").await.status(), 200);
    let out = app.cli(&["audit", "verify"]).await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["mismatches"], serde_json::json!([]));
}

#[tokio::test]
async fn deleted_facet_rows_are_named_by_verify() {
    if !crate::helpers::sqlite_file_at_hand("deleted_facet_rows_are_named_by_verify") {
        return;
    }
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = id_of(&app.create_default(&agent).await);
    app.decide(&bob, &id, "deny", Some("no")).await;

    tamper(
        &app.db,
        &["DELETE FROM audit_facets WHERE facet = 'kind' AND value LIKE 'decision.%'"],
    )
    .await;

    let out = app.cli(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(3));
    let v = stdout_json(&out);
    let named = |id: &str| {
        v["mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"] == "facet" && m["id"] == id && m["fields"][0] == "missing")
    };
    assert!(named("kind:decision.deny"), "{v}");
}

#[tokio::test]
async fn a_key_row_edited_behind_the_service_is_named_by_verify_and_the_api() {
    if !crate::helpers::sqlite_file_at_hand(
        "a_key_row_edited_behind_the_service_is_named_by_verify_and_the_api",
    ) {
        return;
    }
    let app = spawn_app().await;
    app.agent().await;
    let auditor = app.key("user:carol@example.com", None, "audit").await;
    tamper(
        &app.db,
        &["UPDATE api_keys SET owner = NULL, scopes = 'request,read,decide' WHERE principal = 'agent:deploy-bot'"],
    )
    .await;

    let out = app.cli(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(3));
    let v = stdout_json(&out);
    let m = v["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == "key")
        .unwrap_or_else(|| panic!("no key named in {v}"))
        .clone();
    assert_eq!(m["fields"], serde_json::json!(["owner", "scopes"]));

    let api: Value = app
        .get(&auditor, "/v1/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["ok"], false);
    assert_eq!(api["mismatches"][0]["subject"], "key", "{api}");
}

/// The `permit` finding `audit verify` reports for `id`, with its fields.
fn permit_fields(v: &Value, id: &str) -> Vec<String> {
    v["mismatches"]
        .as_array()
        .unwrap_or_else(|| panic!("no mismatches in {v}"))
        .iter()
        .find(|m| m["subject"] == "permit" && m["id"] == id)
        .unwrap_or_else(|| panic!("permit {id} not named in {v}"))["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn redemptions_edited_or_forged_behind_the_service_are_named_by_verify() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let target = app.key("service:deployer", None, "read").await;
    let redeemed = id_of(&app.create_default(&agent).await);
    assert_eq!(
        app.decide(&bob, &redeemed, "approve", None).await.status(),
        200
    );
    let res = app
        .get(&agent, &format!("/v1/approvals/{redeemed}/permit"))
        .await;
    assert_eq!(res.status(), 200);
    let permit: Value = res.json().await.unwrap();
    let res = app
        .post_json(
            &target,
            &format!("/v1/permits/{redeemed}/redeem"),
            &serde_json::json!({"permit": permit["permit"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let unspent = id_of(&app.create_default(&agent).await);
    assert_eq!(
        app.decide(&bob, &unspent, "approve", None).await.status(),
        200
    );
    let pending = id_of(&app.create_default(&agent).await);

    // A redemption with its event, and approved permits not yet spent, verify.
    let out = app.cli(&["audit", "verify"]).await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");

    tamper_app(
        &app,
        &[
            // Someone else, later, took the permit that was redeemed.
            &format!(
                "UPDATE permit_redemptions SET redeemed_by = 'service:elsewhere', \
                 redeemed_at = '2099-01-01T00:00:00.000Z' WHERE jti = '{redeemed}'"
            ),
            // Rows that spend permits no event redeemed: one approved, one
            // for a request that was never approved nor issued a permit.
            &format!(
                "INSERT INTO permit_redemptions (jti, redeemed_by, key_id, redeemed_at) \
                 VALUES ('{unspent}', 'service:deployer', '{NO_KEY}', '2026-01-01T00:00:00.000Z'), \
                 ('{pending}', 'service:deployer', '{NO_KEY}', '2026-01-01T00:00:00.000Z')"
            ),
        ],
    )
    .await;

    let out = app.cli(&["audit", "verify"]).await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(3), "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(permit_fields(&v, &redeemed), ["redeemed_by", "redeemed_at"]);
    assert_eq!(permit_fields(&v, &unspent), ["extra"]);
    assert_eq!(permit_fields(&v, &pending), ["extra", "issued", "status"]);
}

/// Every export needs a console decision with the resource re-typed.
const STEP_UP_POLICY: &str = "rules:\n  - name: exports\n    action: db.export\n    effect: require_approval\n    step_up: console\n";

#[tokio::test]
async fn a_step_up_mark_lives_in_the_signed_trail_and_cannot_be_edited_away() {
    let app = spawn_with_policy(STEP_UP_POLICY).await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let id = id_of(&app.create_default(&agent).await);

    // The mark is the request's policy.evaluated event: an API decision is
    // refused for want of the console.
    let res = app.decide(&bob, &id, "approve", None).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["type"], "urn:countersign:problem:step_up_required",
        "{body}"
    );

    // The mark is cut out of the event itself: the event no longer matches
    // its hash, so the request is not acted on and verify names it.
    let cut = if on_postgres() {
        format!(
            "UPDATE audit_events SET data = replace(data::text, '\"step_up\":\"console\",', '')::json \
             WHERE request_id = '{id}' AND kind = 'policy.evaluated'"
        )
    } else {
        format!(
            "UPDATE audit_events SET data = replace(data, '\"step_up\":\"console\",', '') \
             WHERE request_id = '{id}' AND kind = 'policy.evaluated'"
        )
    };
    tamper_app(&app, &[&cut]).await;
    let res = app.decide(&bob, &id, "approve", None).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "urn:countersign:problem:integrity", "{body}");
    let out = app.cli(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stdout_json(&out));
    assert_eq!(app.count("decisions").await, 0);
}
