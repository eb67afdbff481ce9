//! Decisions on the console go through the shared rules: the refusals and
//! their sentences are the chat's.

use countersign::domain::rules::{Refusal, SelfRelation};

use crate::harness::{BOB, OLIVIA, spawn};
use crate::helpers::export_request;

/// The value of the session's CSRF field in a page.
pub fn csrf_in(html: &str) -> String {
    let at =
        html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_is_refused_on_the_console_with_the_same_sentence_as_in_chat() {
    let t = spawn().await;
    let (id, value) = t.request(export_request()).await;
    let why = Refusal::SelfApproval(SelfRelation::KeyOwner).message();

    // Chat first: Olivia owns the agent's key.
    t.slack.click(OLIVIA, "countersign_approve", &value).await;
    let chat = t.slack.ephemeral_to(OLIVIA).await;
    assert!(chat.contains(&why), "{chat}");

    // The console's inbox does not offer it, its page says why ...
    let b = t.browser_as(OLIVIA).await;
    let inbox = b.wait_text("Waiting for you").await;
    assert!(inbox.contains("Nothing is waiting for you."), "{inbox}");
    b.goto(&t.url(&format!("/ui/requests/{id}"))).await;
    b.wait_text(&why).await;
    b.stop().await;

    // ... and a decision posted anyway is refused by the same rule.
    let (client, cookie) = t.http_session(OLIVIA).await;
    let page = client
        .get(t.url(&format!("/ui/requests/{id}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csrf = csrf_in(&page.text().await.unwrap());
    let res = client
        .post(t.url(&format!("/ui/requests/{id}/decide")))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("verdict", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains(&why));
    assert_eq!(t.status(&id).await, "pending");
    assert_eq!(
        t.slack.count_kind(&id, "decision.blocked").await,
        2,
        "both refusals are audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_without_a_comment_is_refused_and_with_one_it_counts() {
    let t = spawn().await;
    let (id, _) = t.request(export_request()).await;
    let b = t.browser_as(BOB).await;
    b.goto(&t.url(&format!("/ui/requests/{id}"))).await;
    b.click("#deny").await;
    b.wait_text(&Refusal::CommentRequired.message()).await;
    assert_eq!(t.status(&id).await, "pending");

    b.fill("#comment", "Not during the freeze").await;
    b.click("#deny").await;
    b.wait_text("You denied this request.").await;
    assert_eq!(t.status(&id).await, "denied");
    // The posted Slack message follows the console's decision.
    t.slack.wait_update("denied").await;
    b.stop().await;
}
