//! Slack Socket Mode across replicas: each replica holds its own
//! connection, and an envelope Slack hands to both is handled by one.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::Cluster;
use crate::fake_slack::FakeSlack;
use crate::fake_socket::FakeSocket;

const APP_TOKEN: &str = "xapp-1-A0COUNTERSIGN-replicas";

#[tokio::test]
async fn an_envelope_delivered_to_two_replicas_is_handled_by_one_and_acknowledged_by_both() {
    let _one = crate::SERIAL.lock().await;
    let socket = FakeSocket::start().await;
    let fake = FakeSlack::start().await;
    fake.serve_socket_mode(socket.url());
    fake.user("U0BOB", Some("bob@example.com"));
    let api_url = fake.api_url();
    let env = [
        ("COUNTERSIGN_SLACK_BOT_TOKEN", "xoxb-replicas"),
        ("COUNTERSIGN_SLACK_APP_TOKEN", APP_TOKEN),
        ("COUNTERSIGN_SLACK_API_URL", api_url.as_str()),
        ("COUNTERSIGN_SLACK_CHANNEL", "C0APPROVALS"),
    ];
    let Some(cluster) = Cluster::start("replicas_socket_mode", 2, &env).await else {
        return;
    };
    socket.wait_connections(2).await;
    let agent = cluster.agent();
    let client = reqwest::Client::new();
    let id = cluster.replicas[0].create(&client, &agent).await;
    let deny = posted_button(&fake, &id, "countersign_deny").await;

    // The same Deny click on both replicas' connections: each handling
    // would open a deny form.
    let envelope = json!({
        "envelope_id": "twice-to-two-replicas",
        "type": "interactive",
        "accepts_response_payload": false,
        "retry_attempt": 0,
        "payload": {
            "type": "block_actions",
            "user": { "id": "U0BOB", "team_id": "T1" },
            "team": { "id": "T1" },
            "container": { "type": "message", "channel_id": "C0APPROVALS" },
            "trigger_id": "trigger-bob",
            "actions": [{ "action_id": "countersign_deny", "value": deny, "type": "button" }],
        },
    });
    socket.send_raw(0, envelope.to_string());
    socket.send_raw(1, envelope.to_string());

    let acks = socket.wait_acks("twice-to-two-replicas", 2).await;
    assert!(
        acks.iter()
            .all(|a| *a == json!({ "envelope_id": "twice-to-two-replicas" })),
        "{acks:?}"
    );
    fake.wait_for("views.open", 1).await;
    assert_eq!(fake.calls("views.open").len(), 1, "handled once");
}

/// The value of the button `action_id` in the post of request `id`.
async fn posted_button(fake: &FakeSlack, id: &str, action_id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = fake
            .successes("chat.postMessage")
            .iter()
            .flat_map(|c| c.body["blocks"].as_array().cloned().unwrap_or_default())
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["action_id"] == action_id)
            .filter_map(|e| e["value"].as_str().map(str::to_string))
            .find(|v| v.contains(id));
        if let Some(v) = found {
            return v;
        }
        assert!(Instant::now() < deadline, "no post of {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
