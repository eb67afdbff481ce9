//! Agent text is shown as text: markup, script and formatting stay inert.

use serde_json::json;

use crate::harness::{BOB, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_text_with_script_and_formatting_is_shown_inert() {
    let t = spawn().await;
    let hostile = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned=2\"> **bold** <b>tag</b>";
    let (id, _) = t
        .request(json!({
            "action": "db.export",
            "resource": "prod/customers",
            "summary": hostile,
            "justification": "<a href=\"https://evil.example\">click</a>",
            "details": { "<i>key</i>": "<u>value</u>" },
            "risk": "low",
        }))
        .await;
    let b = t.browser_as(BOB).await;
    let inbox = b.wait_text("Waiting for you").await;
    assert!(
        inbox.contains("<script>window.pwned = 1</script>"),
        "{inbox}"
    );
    b.goto(&t.url(&format!("/ui/requests/{id}"))).await;
    let page = b.wait_text("Timeline").await;
    assert!(page.contains(hostile), "the summary reads as typed: {page}");
    assert!(page.contains("<a href=\"https://evil.example\">click</a>"));
    assert!(page.contains("<i>key</i>") && page.contains("<u>value</u>"));
    let ran = b
        .client
        .execute("return [typeof window.pwned, document.querySelectorAll('main script, main img, main b, main a[href^=\"https://evil\"], main i, main u').length];", vec![])
        .await
        .unwrap();
    assert_eq!(ran, json!(["undefined", 0]));
    b.stop().await;
}
