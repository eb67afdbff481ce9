use std::time::Duration;

use crate::bot::*;

#[tokio::test]
async fn a_connector_answering_429_and_500_for_a_while_gets_the_card_exactly_once() {
    let t = spawn_teams().await;
    t.bf.fail_next_posts(&[(429, Some("1")), (500, None), (503, None)]);
    let agent = t.app.agent().await;
    let request = t.app.create_default(&agent).await;
    let id = request["id"].as_str().unwrap();
    t.wait_until_posted(id).await;
    let posts = t.bf.posts();
    let statuses: Vec<u16> = posts.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 500, 503, 200]);
    // Retry-After: 1 was honoured before the next attempt.
    assert!(posts[1].at.duration_since(posts[0].at) >= Duration::from_millis(900));
    let kinds = t.app.audit_kinds(id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "teams.posted").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "teams.failed").count(), 3);
    assert_eq!(t.app.count("chat_messages").await, 1);
    // Nothing is left to deliver and nothing is posted again.
    eventually("the outbox to drain", || async {
        countersign::store::outbox::backlog(&t.app.app.store)
            .await
            .unwrap()
            == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.bf.posts().iter().filter(|c| c.status == 200).count(), 1);
    // The card still works after the retries.
    let card = t.click("bob", "approve", &request, None).await;
    assert!(card_text(&card).contains("Approved"));
    t.bf.wait_for("the update", |c| c.iter().any(|c| c.is_update()))
        .await;
}

#[tokio::test]
async fn a_permanent_connector_error_is_given_up_and_audited() {
    let t = spawn_teams().await;
    t.bf.fail_next_posts(&[(403, None)]);
    let agent = t.app.agent().await;
    let request = t.app.create_default(&agent).await;
    let id = request["id"].as_str().unwrap().to_string();
    eventually("the delivery to be given up", || async {
        t.app
            .audit_kinds(&id)
            .await
            .contains(&"delivery.given_up".to_string())
    })
    .await;
    assert_eq!(t.bf.posts().len(), 1, "a 403 is not retried");
    assert_eq!(t.app.count("chat_messages").await, 0);
}

#[tokio::test]
async fn the_connector_token_is_fetched_once_and_reused() {
    let t = spawn_teams().await;
    let (_, first, _) = t.create_and_post().await;
    let (_, second, _) = t.create_and_post().await;
    t.click("bob", "approve", &first, None).await;
    t.click("bob", "approve", &second, None).await;
    t.bf.wait_for("both cards to be updated", |c| {
        c.iter().filter(|c| c.is_update()).count() >= 2
    })
    .await;
    assert_eq!(t.bf.token_calls(), 1);
    assert!(
        t.bf.connector_calls()
            .iter()
            .all(|c| c.auth.as_deref() == Some("Bearer connector-token-0"))
    );
}

#[tokio::test]
async fn the_bot_never_calls_a_service_url_off_the_allowlist() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let before = t.bf.connector_calls().len();
    // A correctly signed activity whose service URL is not allowed: the
    // bot must not send its token there to look the clicker up.
    let elsewhere = t.bf.service_url().replace("127.0.0.1", "localhost");
    let mut activity = t.click_activity("bob", "approve", &request, None);
    activity["serviceUrl"] = serde_json::json!(elsewhere);
    let token = mint(&claims(&elsewhere), Some(GOOD_KID), &SIGNING);
    let res = t
        .send_with(&activity, Some(format!("Bearer {token}")))
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(card_text(&body["value"]).contains("not on the allowlist"));
    assert_eq!(t.bf.connector_calls().len(), before);
    assert_eq!(
        t.app
            .status_of(&agent, request["id"].as_str().unwrap())
            .await,
        "pending"
    );
}

#[tokio::test]
async fn many_requests_at_once_are_each_posted_exactly_once() {
    let t = spawn_teams().await;
    let agent = t.app.agent().await;
    let creates = (0..30).map(|_| t.app.create_default(&agent));
    let requests = futures::future::join_all(creates).await;
    for r in &requests {
        t.wait_until_posted(r["id"].as_str().unwrap()).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let posts = t.bf.posts();
    let ids: std::collections::BTreeSet<String> = posts
        .iter()
        .map(|c| {
            c.card()["actions"][0]["data"]["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 30);
    assert_eq!(posts.len(), 30, "no card was posted twice");
}

#[tokio::test]
async fn a_connector_that_rejects_the_token_gets_a_fresh_one_on_the_retry() {
    let t = spawn_teams().await;
    t.bf.fail_next_posts(&[(401, None)]);
    let agent = t.app.agent().await;
    let request = t.app.create_default(&agent).await;
    t.wait_until_posted(request["id"].as_str().unwrap()).await;
    let statuses: Vec<u16> = t.bf.posts().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [401, 200]);
    assert_eq!(t.bf.token_calls(), 2);
}
