//! What must hold however many replicas run it: one request per
//! idempotency key, one final transition per expiry, and a revoked key
//! refused by every replica at once.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::Cluster;
use crate::helpers::export_request;

#[tokio::test]
async fn one_idempotency_key_sent_to_every_replica_at_once_makes_one_request() {
    let _one = crate::SERIAL.lock().await;
    let Some(cluster) = Cluster::start("replicas_idempotency", 3, &[]).await else {
        return;
    };
    let agent = cluster.agent();
    let client = reqwest::Client::new();
    let mut tasks = vec![];
    for round in 0..4 {
        for r in &cluster.replicas {
            let (client, url, agent) = (client.clone(), r.url("/v1/approvals"), agent.clone());
            tasks.push(tokio::spawn(async move {
                let res = client
                    .post(url)
                    .bearer_auth(agent)
                    .header("Idempotency-Key", "export-2026-q4")
                    .json(&export_request())
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (round, status, res.json::<Value>().await.unwrap())
            }));
        }
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (round, status, body) = t.await.unwrap();
        assert!(
            matches!(status, 200 | 201),
            "round {round}: {status} {body}"
        );
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one key, one request: {ids:?}");
    let created = cluster
        .cli(&["audit", "export"])
        .lines()
        .filter(|l| l.contains("\"kind\":\"request.created\""))
        .count();
    assert_eq!(created, 1);
}

#[tokio::test]
async fn a_request_expiring_under_three_sweepers_expires_exactly_once() {
    let _one = crate::SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - name: quick\n    effect: require_approval\n    expires_in: 1s\n",
    )
    .unwrap();
    let env = [("COUNTERSIGN_POLICY", policy.to_str().unwrap())];
    let Some(cluster) = Cluster::start("replicas_expiry", 3, &env).await else {
        return;
    };
    let agent = cluster.agent();
    let client = reqwest::Client::new();
    let mut ids = vec![];
    for i in 0..12 {
        ids.push(cluster.replicas[i % 3].create(&client, &agent).await);
    }
    // Each replica's sweeper races for every deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &ids {
        loop {
            let v: Value = client
                .get(cluster.replicas[2].url(&format!("/v1/approvals/{id}")))
                .bearer_auth(&agent)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["status"] == "expired" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never expired: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let export = cluster.cli(&["audit", "export"]);
    for id in &ids {
        let expired = export
            .lines()
            .filter(|l| l.contains(id.as_str()) && l.contains("\"kind\":\"request.expired\""))
            .count();
        assert_eq!(expired, 1, "{id} expired {expired} times");
    }
    cluster.verified();
}

#[tokio::test]
async fn a_key_revoked_from_the_cli_is_refused_by_every_replica_at_once() {
    let _one = crate::SERIAL.lock().await;
    let Some(cluster) = Cluster::start("replicas_revocation", 3, &[]).await else {
        return;
    };
    let agent = cluster.agent();
    let client = reqwest::Client::new();
    for r in &cluster.replicas {
        let res = client
            .get(r.url("/v1/approvals"))
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let keys: Value = serde_json::from_str(&cluster.cli(&["keys", "list", "--json"])).unwrap();
    let id = keys[0]["id"].as_str().unwrap();
    cluster.cli(&["keys", "revoke", id]);
    // No wait: the next request on any replica is refused.
    for r in &cluster.replicas {
        let res = client
            .post(r.url("/v1/approvals"))
            .bearer_auth(&agent)
            .json(&export_request())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{}", r.base);
        let body: Value = res.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains("revoked"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_request_row_edited_in_postgres_behind_the_service_is_refused_and_named_by_verify() {
    let _one = crate::SERIAL.lock().await;
    let Some(cluster) = Cluster::start("replicas_forged_row", 2, &[]).await else {
        return;
    };
    let agent = cluster.agent();
    let client = reqwest::Client::new();
    let id = cluster.replicas[0].create(&client, &agent).await;
    cluster.verified();

    // Someone with the database's password makes the request look harmless.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.db.url)
        .await
        .unwrap();
    sqlx::query("UPDATE approval_requests SET summary = 'Rotate a log file' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&mut conn)
        .await
        .unwrap();

    // No replica serves it, and verify names the request and the field.
    for r in &cluster.replicas {
        let res = client
            .get(r.url(&format!("/v1/approvals/{id}")))
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 409, "{}", r.base);
    }
    let out = cluster.cli_output(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mismatches"][0]["subject"], "request", "{report}");
    assert_eq!(report["mismatches"][0]["id"], id.as_str(), "{report}");
    assert_eq!(
        report["mismatches"][0]["fields"],
        serde_json::json!(["summary"]),
        "{report}"
    );
}
