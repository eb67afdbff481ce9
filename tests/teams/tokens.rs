use serde_json::json;

use crate::bot::*;

/// Sends a click on a pending request with `authorization` and checks it
/// is answered 401 with nothing changed: no decision, no audit event, no
/// call to the Bot Connector, the request still pending.
async fn refused(authorization: Option<String>, why: &str) {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let before = t.footprint().await;
    let activity = t.click_activity("bob", "approve", &request, None);
    let res = t.send_with(&activity, authorization).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = res.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(why), "refused because {why}, not: {detail}");
    assert_eq!(t.footprint().await, before, "nothing changed");
    assert_eq!(
        t.app
            .status_of(&agent, request["id"].as_str().unwrap())
            .await,
        "pending"
    );
}

fn bearer(token: String) -> Option<String> {
    Some(format!("Bearer {token}"))
}

/// Mints after the app is up, so the serviceurl claim can be right.
async fn refused_with(why: &str, make: impl FnOnce(&str) -> Option<String>) {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let before = t.footprint().await;
    let activity = t.click_activity("bob", "approve", &request, None);
    let res = t.send_with(&activity, make(&t.bf.service_url())).await;
    assert_eq!(res.status(), 401);
    let problem: serde_json::Value = res.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(why), "refused because {why}, not: {detail}");
    assert_eq!(t.footprint().await, before, "nothing changed");
    assert_eq!(
        t.app
            .status_of(&agent, request["id"].as_str().unwrap())
            .await,
        "pending"
    );
}

#[tokio::test]
async fn a_token_signed_with_the_wrong_key_is_refused() {
    refused_with("signature does not verify", |url| {
        bearer(mint(&claims(url), Some(GOOD_KID), &OTHER))
    })
    .await;
}

#[tokio::test]
async fn a_token_for_another_app_id_is_refused() {
    refused_with("another app id", |url| {
        let mut c = claims(url);
        c["aud"] = json!("00000000-0000-0000-0000-000000000000");
        bearer(mint(&c, Some(GOOD_KID), &SIGNING))
    })
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    refused_with("not issued by the Bot Framework", |url| {
        let mut c = claims(url);
        c["iss"] = json!("https://sts.windows.net/evil/");
        bearer(mint(&c, Some(GOOD_KID), &SIGNING))
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    refused_with("expired", |url| {
        let mut c = claims(url);
        c["nbf"] = json!(now() - 7200);
        c["exp"] = json!(now() - 600);
        bearer(mint(&c, Some(GOOD_KID), &SIGNING))
    })
    .await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    refused_with("not valid yet", |url| {
        let mut c = claims(url);
        c["nbf"] = json!(now() + 600);
        bearer(mint(&c, Some(GOOD_KID), &SIGNING))
    })
    .await;
}

#[tokio::test]
async fn a_token_for_another_service_url_is_refused() {
    refused_with("not the token's serviceurl", |_| {
        bearer(mint(
            &claims("https://smba.evil.example/"),
            Some(GOOD_KID),
            &SIGNING,
        ))
    })
    .await;
}

#[tokio::test]
async fn a_token_without_a_serviceurl_claim_is_refused() {
    refused_with("no serviceurl claim", |url| {
        let mut c = claims(url);
        c.as_object_mut().unwrap().remove("serviceurl");
        bearer(mint(&c, Some(GOOD_KID), &SIGNING))
    })
    .await;
}

#[tokio::test]
async fn a_token_with_an_unknown_key_id_is_refused() {
    refused_with("not a Bot Framework key", |url| {
        bearer(mint(&claims(url), Some("no-such-kid"), &SIGNING))
    })
    .await;
}

#[tokio::test]
async fn a_token_without_a_key_id_is_refused() {
    refused_with("names no signing key", |url| {
        bearer(mint(&claims(url), None, &SIGNING))
    })
    .await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    refused_with("not an RS256 JWT header", |url| {
        bearer(mint_none(&claims(url)))
    })
    .await;
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    refused_with("only RS256", |url| {
        bearer(mint_hs256(&claims(url), SIGNING.n.as_bytes()))
    })
    .await;
}

#[tokio::test]
async fn a_token_signed_by_a_key_not_endorsed_for_teams_is_refused() {
    refused_with("not endorsed for msteams", |url| {
        bearer(mint(&claims(url), Some(WEBCHAT_KID), &OTHER))
    })
    .await;
}

#[tokio::test]
async fn a_request_without_an_authorization_header_is_refused() {
    refused(None, "no Authorization: Bearer header").await;
}

#[tokio::test]
async fn a_malformed_authorization_header_is_refused() {
    refused(
        Some("Basic Ym9iOnB3".into()),
        "no Authorization: Bearer header",
    )
    .await;
    refused(Some("Bearer not.a.jwt".into()), "not an RS256 JWT header").await;
}

#[tokio::test]
async fn an_activity_whose_service_url_differs_from_the_tokens_is_refused() {
    let t = spawn_teams().await;
    let (_, request, _) = t.create_and_post().await;
    let before = t.footprint().await;
    let mut activity = t.click_activity("bob", "approve", &request, None);
    activity["serviceUrl"] = json!("https://smba.evil.example/");
    let res = t.send(&activity).await;
    assert_eq!(res.status(), 401);
    assert_eq!(t.footprint().await, before);
}

#[tokio::test]
async fn a_bad_token_on_a_conversation_update_captures_nothing() {
    let t = spawn_teams().await;
    let activity = t.bot_added_activity("19:sneaky@thread.tacv2", Some("Sneaky"));
    let token = mint(&claims(&t.bf.service_url()), Some(GOOD_KID), &OTHER);
    let res = t.send_with(&activity, bearer(token)).await;
    assert_eq!(res.status(), 401);
    assert_eq!(t.app.count("teams_conversations").await, 0);
    assert_eq!(t.app.count("audit_events").await, 0);
}

#[tokio::test]
async fn a_token_within_the_five_minute_leeway_is_accepted() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let mut c = claims(&t.bf.service_url());
    c["exp"] = json!(now() - 120);
    c["nbf"] = json!(now() + 120);
    let activity = t.click_activity("bob", "approve", &request, None);
    let res = t
        .send_with(&activity, bearer(mint(&c, Some(GOOD_KID), &SIGNING)))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        t.app
            .status_of(&agent, request["id"].as_str().unwrap())
            .await,
        "approved"
    );
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_on_its_unknown_key_id() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    // The first activity loads the key set.
    let dave = t.click_activity(
        "dave",
        "approve",
        &serde_json::json!({"id": "not-a-uuid"}),
        None,
    );
    assert_eq!(t.send(&dave).await.status(), 200);
    t.bf.set_jwks(json!({ "keys": [
        jwk(GOOD_KID, &SIGNING, &["msteams"]),
        jwk("bf-key-2", &OTHER, &["msteams"]),
    ]}));
    // Refetches are rate-limited to one a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let token = mint(&claims(&t.bf.service_url()), Some("bf-key-2"), &OTHER);
    let activity = t.click_activity("bob", "approve", &request, None);
    let res = t.send_with(&activity, bearer(token)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        t.app
            .status_of(&agent, request["id"].as_str().unwrap())
            .await,
        "approved"
    );
    let fetches =
        t.bf.calls()
            .iter()
            .filter(|c| c.segments == ["keys"])
            .count();
    assert_eq!(fetches, 2);
}

#[tokio::test]
async fn an_activity_from_another_tenant_is_refused() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let before = t.footprint().await;
    let mut activity = t.click_activity("bob", "approve", &request, None);
    activity["conversation"]["tenantId"] = json!("tenant-evil");
    activity["channelData"]["tenant"]["id"] = json!("tenant-evil");
    let res = t.send(&activity).await;
    assert_eq!(res.status(), 403);
    assert_eq!(t.footprint().await, before);
    assert_eq!(
        t.app
            .status_of(&agent, request["id"].as_str().unwrap())
            .await,
        "pending"
    );
}
