//! Appends from every replica form one chain.

use std::sync::{Arc, Mutex};

use crate::cluster::{Cluster, assert_gapless};
use crate::helpers::export_request;

#[tokio::test]
async fn three_replicas_with_sixteen_writers_each_keep_one_gapless_chain_and_every_acknowledged_request()
 {
    let _one = crate::SERIAL.lock().await;
    let Some(cluster) = Cluster::start("replicas_writers", 3, &[]).await else {
        return;
    };
    let agent = cluster.key(
        "agent:loader",
        Some("user:owner@example.com"),
        "request,read",
    );
    let client = reqwest::Client::new();
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = vec![];
    for r in &cluster.replicas {
        for _ in 0..16 {
            let (client, url, agent, acked) = (
                client.clone(),
                r.url("/v1/approvals"),
                agent.clone(),
                acknowledged.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let res = client
                        .post(&url)
                        .bearer_auth(&agent)
                        .json(&export_request())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
                    let v: serde_json::Value = res.json().await.unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_string());
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 3 * 16 * 10);

    // Every acknowledged request is there, whichever replica is asked.
    for (i, id) in acknowledged.iter().enumerate() {
        let r = &cluster.replicas[i % 3];
        let res = client
            .get(r.url(&format!("/v1/approvals/{id}")))
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{id} on replica {}", i % 3);
    }
    // One chain: seq 1..=n without a gap, every link and signature good.
    let seqs = cluster.exported_seqs();
    assert_gapless(&seqs);
    let report = cluster.verified();
    assert_eq!(report["events"], seqs.len(), "{report}");
    // One `request.created` per acknowledged request, none lost or doubled.
    let created: std::collections::HashSet<String> = cluster
        .cli(&["audit", "export"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "request.created")
        .map(|v| v["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(created, acknowledged.iter().cloned().collect());
}
