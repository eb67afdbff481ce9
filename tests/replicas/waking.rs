//! A decision taken on one replica reaches an agent waiting on another.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::Cluster;

#[tokio::test]
async fn created_on_a_decided_on_b_the_waiter_on_c_answers_within_a_second() {
    let _one = crate::SERIAL.lock().await;
    let Some(cluster) = Cluster::start("replicas_waking", 3, &[]).await else {
        return;
    };
    let agent = cluster.agent();
    let bob = cluster.key("user:bob@example.com", None, "decide,read");
    let client = reqwest::Client::new();
    let (a, b, c) = (
        &cluster.replicas[0],
        &cluster.replicas[1],
        &cluster.replicas[2],
    );

    let id = a.create(&client, &agent).await;

    let waiter = {
        let (client, url, agent) = (
            client.clone(),
            c.url(&format!("/v1/approvals/{id}?wait=30")),
            agent.clone(),
        );
        tokio::spawn(async move {
            let res = client.get(url).bearer_auth(agent).send().await.unwrap();
            (
                Instant::now(),
                res.status(),
                res.json::<Value>().await.unwrap(),
            )
        })
    };
    // The waiter is parked on C before anyone decides (it would still see
    // the decision if it were not: it reads after subscribing).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter answered before any decision"
    );

    let res = client
        .post(b.url(&format!("/v1/approvals/{id}/decisions")))
        .bearer_auth(&bob)
        .json(&json!({"verdict": "approve", "comment": "ok"}))
        .send()
        .await
        .unwrap();
    let decided = Instant::now();
    assert_eq!(res.status(), 200);

    let (answered, status, body) = waiter.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "approved", "{body}");
    let after = answered.saturating_duration_since(decided);
    eprintln!("the waiter on C answered {after:?} after B's decision was acknowledged");
    assert!(after < Duration::from_secs(1), "took {after:?}");
}
