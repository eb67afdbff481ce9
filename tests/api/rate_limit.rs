//! Rate limits in the shared auth path: per API key, and per source address
//! for failed authentication; 429 problem+json with `Retry-After`.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_while_another_key_is_unaffected() {
    let app = spawn_with(|s| {
        s.network.rate_limit = 1;
        s.network.rate_burst = 5;
    })
    .await;
    let busy = app.agent().await;
    let calm = app.key("agent:other-bot", None, "request,read").await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let res = app.get(&busy, "/v1/approvals").await;
        statuses.push(res.status().as_u16());
        if res.status() == 429 && limited.is_none() {
            limited = Some(res);
        }
    }
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    let res = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    assert!(problem["detail"].as_str().unwrap().contains("rate"));
    assert_eq!(app.get(&calm, "/v1/approvals").await.status(), 200);
}

#[tokio::test]
async fn a_limited_key_is_served_again_once_its_rate_allows() {
    let app = spawn_with(|s| {
        s.network.rate_limit = 2;
        s.network.rate_burst = 1;
    })
    .await;
    let key = app.agent().await;
    let mut limited = false;
    for _ in 0..5 {
        limited |= app.get(&key, "/v1/approvals").await.status() == 429;
    }
    assert!(limited);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.get(&key, "/v1/approvals").await.status(), 200);
}

#[tokio::test]
async fn a_rate_limit_of_0_turns_limiting_off() {
    let app = spawn_with(|s| {
        s.network.rate_limit = 0;
        s.network.rate_burst = 1;
    })
    .await;
    let key = app.agent().await;
    for _ in 0..100 {
        assert_eq!(app.get(&key, "/v1/approvals").await.status(), 200);
    }
    for _ in 0..100 {
        assert_eq!(app.get("not-a-key", "/v1/approvals").await.status(), 401);
    }
}

#[tokio::test]
async fn the_default_limit_is_on_and_far_above_a_normal_agent() {
    let app = spawn_app().await;
    assert!(app.app.settings.network.rate_limit > 0);
    let key = app.agent().await;
    for _ in 0..200 {
        assert_eq!(app.get(&key, "/v1/approvals").await.status(), 200);
    }
}

#[tokio::test]
async fn an_address_that_keeps_guessing_keys_is_slowed_to_429_with_retry_after() {
    let app = spawn_app().await;
    let mut limited = 0;
    for i in 0..200 {
        let res = app.get(&format!("cs_guess_{i}"), "/v1/approvals").await;
        match res.status().as_u16() {
            401 => {}
            429 => {
                assert!(res.headers().contains_key("retry-after"));
                limited += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(limited >= 40, "only {limited} of 200 guesses were slowed");
}
