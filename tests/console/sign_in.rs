//! Signing in with a one-time link from Slack's `/audit login`, and what
//! the link refuses.

use std::time::Duration;

use serde_json::Value;

use crate::browser::Browser;
use crate::harness::{BOB, spawn, spawn_with};
use crate::helpers::export_request;
use crate::support::{NOMAIL, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_from_slack_signs_in_shows_the_request_and_an_approval_ends_the_agents_long_poll() {
    let t = spawn().await;
    let (id, _) = t.request(export_request()).await;
    let agent = t.slack.app.agent().await;
    let poll = {
        let client = t.slack.app.client.clone();
        let url = t.url(&format!("/v1/approvals/{id}?wait=60"));
        tokio::spawn(async move {
            let v: Value = client
                .get(url)
                .bearer_auth(agent)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        })
    };

    let answer = t.slack.audit(BOB, "login").await;
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("valid for 5 minutes and usable once"),
        "{text}"
    );
    assert_eq!(
        answer["response_type"], "ephemeral",
        "only the asker sees the link"
    );
    let link = crate::harness::link_in(&answer);
    assert!(link.starts_with(&t.url("/ui/login/")), "{link}");

    let b = Browser::start().await;
    b.goto(&link).await;
    // The link's page signs nobody in by itself (unfurlers fetch it).
    let confirm = b.wait_text("signs you in as bob@example.com").await;
    assert!(!confirm.contains("Sign out"));
    b.click("#sign-in").await;
    let inbox = b.wait_text("Waiting for you").await;
    assert_eq!(b.path().await, "/ui/");
    assert!(inbox.contains("prod/customers"), "{inbox}");
    assert!(inbox.contains("1 more approval (0 of 1 so far)"), "{inbox}");
    b.screenshot("inbox").await;

    b.click(&format!("a[href='/ui/requests/{id}']")).await;
    let page = b.wait_text("Timeline").await;
    assert!(page.contains("Export the customers table for the quarterly audit"));
    assert!(
        page.contains("request.created") && page.contains("policy.evaluated"),
        "{page}"
    );
    b.screenshot("request").await;

    b.fill("#comment", "Checked with the auditors").await;
    b.click("#approve").await;
    b.wait_text("You approved this request.").await;
    b.wait_text("decision.approve").await;

    let answered = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answered["status"], "approved", "{answered}");
    assert_eq!(
        answered["approvals"][0]["principal"],
        "user:bob@example.com"
    );
    assert_eq!(answered["approvals"][0]["channel"], "console");
    assert_eq!(t.slack.count_kind(&id, "decision.approve").await, 1);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_signs_in_once_and_a_second_use_is_refused() {
    let t = spawn().await;
    let link = t.login_link(BOB).await;
    let b = Browser::start().await;
    b.goto(&link).await;
    b.click("#sign-in").await;
    b.wait_text("Sign out").await;

    // The same link again, in the browser and by a plain POST.
    b.goto(&link).await;
    b.wait_text("This sign-in link has already been used").await;
    let res = t
        .slack
        .app
        .client
        .post(&link)
        .form(&[("next", "/ui/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 410);
    assert!(res.headers().get("set-cookie").is_none());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clicks_racing_on_one_link_sign_in_once() {
    let t = spawn().await;
    let link = t.login_link(BOB).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tries = (0..8).map(|_| client.post(&link).form(&[("next", "/ui/")]).send());
    let statuses: Vec<u16> = futures::future::join_all(tries)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 410).count(),
        7,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_link_from_chat_is_valid_for_five_minutes_as_its_signed_event_records() {
    let t = spawn().await;
    t.login_link(BOB).await;
    let issued: Vec<_> = t
        .slack
        .app
        .events(countersign::store::trail::AuditFilter {
            kind: Some("console.link_issued".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(issued.len(), 1);
    let e = &issued[0];
    assert_eq!(e.actor, "user:bob@example.com");
    let data: Value = serde_json::from_str(&e.data).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(&e.ts).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(data["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(until - at, chrono::Duration::minutes(5));
    assert!(
        !e.data.contains("/ui/login/"),
        "the token is never in the trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_is_refused_once_it_has_expired() {
    // The link's lifetime is a setting (5 minutes unless changed): a short
    // one here, waited out, instead of five minutes.
    let t = spawn_with(|s| s.console.link_ttl = Duration::from_secs(1)).await;
    let link = t.login_link(BOB).await;
    let client = t.slack.app.client.clone();
    eventually("the link to expire", || async {
        let res = client.get(&link).send().await.unwrap();
        res.status() == 410
            && res
                .text()
                .await
                .unwrap()
                .contains("This sign-in link has expired")
    })
    .await;
    let res = client
        .post(&link)
        .form(&[("next", "/ui/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 410);
    assert!(res.text().await.unwrap().contains("has expired"));
}

#[tokio::test]
async fn someone_whose_slack_account_maps_to_no_one_gets_no_link() {
    let t = spawn().await;
    let answer = t.slack.audit(NOMAIL, "login").await;
    let text = answer["text"].as_str().unwrap();
    assert!(!text.contains("/ui/login/"), "{text}");
    // The same answer as any other command from an unmapped account.
    let other = t.slack.audit(NOMAIL, "pending").await;
    assert_eq!(text, other["text"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sign_in_the_browser_goes_to_the_console_page_named_by_next_and_nowhere_else() {
    let t = spawn().await;
    let (id, _) = t.request(export_request()).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (next, to) in [
        (format!("/ui/requests/{id}"), format!("/ui/requests/{id}")),
        ("https://evil.example/ui/".to_string(), "/ui/".to_string()),
        ("//evil.example/".to_string(), "/ui/".to_string()),
    ] {
        let link = t.login_link(BOB).await;
        let res = client
            .post(&link)
            .form(&[("next", next.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], to.as_str(), "next={next}");
    }
}

#[tokio::test]
async fn a_person_signs_in_with_their_api_key_and_an_agents_key_is_refused() {
    let t = spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = t.url("/ui/login/key");
    let bob = t.slack.app.human("bob@example.com").await;
    let res = client
        .post(&login)
        .form(&[("key", bob.as_str()), ("next", "/ui/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let inbox = client
        .get(t.url("/ui/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.status(), 200);
    assert!(inbox.text().await.unwrap().contains("bob@example.com"));

    let agent = t.slack.app.agent().await;
    let res = client
        .post(&login)
        .form(&[("key", agent.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("the console is for people")
    );
    let res = client
        .post(&login)
        .form(&[("key", "cs_not-a-key")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());
}
