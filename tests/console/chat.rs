//! What the chat messages say of the console.

use serde_json::json;

use crate::harness::spawn_with;
use crate::helpers::export_request;
use crate::support::texts;

fn open_button(call: &crate::fake_slack::Call) -> Option<(String, String)> {
    call.body["blocks"]
        .as_array()?
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .find(|e| e["action_id"] == "countersign_open")
        .map(|e| {
            (
                e["url"].as_str().unwrap().to_string(),
                e["text"]["text"].as_str().unwrap().to_string(),
            )
        })
}

#[tokio::test]
async fn with_a_public_url_each_approval_message_opens_its_request_in_the_console() {
    let t = spawn_with(|s| s.public_url = Some("https://countersign.example.com/".into())).await;
    let agent = t.slack.app.agent().await;
    let (id, post) = t.slack.create_posted(&agent, export_request()).await;
    let (url, label) = open_button(&post).expect("an Open in Countersign button");
    assert_eq!(
        url,
        format!("https://countersign.example.com/ui/requests/{id}")
    );
    assert_eq!(label, "Open in Countersign");

    let (drop_id, drop_post) = t
        .slack
        .create_posted(&agent, json!({ "action": "db.drop", "resource": "prod/orders", "summary": "Drop it", "risk": "critical" }))
        .await;
    let (url, label) = open_button(&drop_post).expect("a button to the console");
    assert_eq!(
        url,
        format!("https://countersign.example.com/ui/requests/{drop_id}")
    );
    assert_eq!(label, "Open in Countersign to decide");
    assert!(
        texts(&drop_post).contains("Step-up"),
        "{}",
        texts(&drop_post)
    );
}

#[tokio::test]
async fn without_a_public_url_no_message_links_to_the_console() {
    let t = spawn_with(|_| {}).await;
    let agent = t.slack.app.agent().await;
    let (_, post) = t.slack.create_posted(&agent, export_request()).await;
    assert!(open_button(&post).is_none());
}
