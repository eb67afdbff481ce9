//! `step_up: console`: a chat click does not decide; the console does,
//! once the approver re-types the resource.

use countersign::domain::rules::Refusal;
use serde_json::json;

use crate::harness::{BOB, spawn};

fn drop_request() -> serde_json::Value {
    json!({
        "action": "db.drop",
        "resource": "prod/orders",
        "summary": "Drop the orders table",
        "risk": "critical",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_request_is_not_decided_by_a_chat_click_but_on_the_console_with_the_resource_retyped()
 {
    let t = spawn().await;
    let (id, value) = t.request(drop_request()).await;

    t.slack.click(BOB, "countersign_approve", &value).await;
    let told = t.slack.ephemeral_to(BOB).await;
    assert!(told.contains(&Refusal::StepUpRequired.message()), "{told}");
    assert_eq!(t.status(&id).await, "pending");
    assert_eq!(
        t.slack.count_kind(&id, "decision.blocked").await,
        1,
        "the refused click is audited"
    );

    let b = t.browser_as(BOB).await;
    let inbox = b.wait_text("Waiting for you").await;
    assert!(inbox.contains("step-up"), "{inbox}");
    b.goto(&t.url(&format!("/ui/requests/{id}"))).await;
    b.wait_text("re-type the resource").await;
    b.fill("#confirmation", "prod/order").await;
    b.click("#approve").await;
    b.wait_text(&Refusal::ResourceNotConfirmed.message()).await;
    assert_eq!(t.status(&id).await, "pending");

    b.fill("#confirmation", "prod/orders").await;
    b.click("#approve").await;
    b.wait_text("You approved this request.").await;
    assert_eq!(t.status(&id).await, "approved");
    b.stop().await;
}
