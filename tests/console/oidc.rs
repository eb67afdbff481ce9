//! Signing in with an OpenID Connect provider (the fake on loopback).

use countersign::config::{OidcSettings, Secret};

use crate::browser::Browser;
use crate::fake_oidc::{CLIENT_ID, CLIENT_SECRET, FakeOidc, Person};
use crate::harness::{ConsoleTest, spawn_with};

async fn spawn_oidc() -> (ConsoleTest, FakeOidc) {
    let fake = FakeOidc::start().await;
    let issuer = fake.base.clone();
    let t = spawn_with(move |s| {
        s.console.oidc = Some(OidcSettings {
            issuer,
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET),
        })
    })
    .await;
    (t, fake)
}

fn dan(verified: Option<bool>, ago: i64) -> Person {
    Person {
        email: "dan@example.com".into(),
        email_verified: verified,
        signed_in_secs_ago: ago,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_the_identity_provider_and_their_email_is_their_principal() {
    let (t, fake) = spawn_oidc().await;
    fake.sign_in_as(dan(Some(true), 30));
    let b = Browser::start().await;
    b.goto(&t.url("/ui/login")).await;
    b.click("#oidc").await;
    let inbox = b.wait_text("Waiting for you").await;
    assert!(inbox.contains("dan@example.com"), "{inbox}");
    assert_eq!(b.path().await, "/ui/");
    let asked = &fake.authorizations()[0];
    assert_eq!(asked["code_challenge_method"], "S256", "PKCE");
    assert!(!asked["nonce"].is_empty() && !asked["state"].is_empty());
    assert!(asked["scope"].contains("openid") && asked["scope"].contains("email"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_the_provider_says_is_unverified_signs_no_one_in() {
    let (t, fake) = spawn_oidc().await;
    fake.sign_in_as(dan(Some(false), 30));
    let b = Browser::start().await;
    b.goto(&t.url("/ui/login")).await;
    b.click("#oidc").await;
    b.wait_text("not verified").await;
    b.goto(&t.url("/ui/")).await;
    b.wait_text("Sign in to Countersign").await;
    b.stop().await;
}

#[tokio::test]
async fn a_callback_whose_state_was_not_started_in_this_browser_is_refused() {
    let (t, _fake) = spawn_oidc().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .get(t.url("/ui/login/oidc/callback?code=code-1&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = client
        .get(t.url("/ui/login/oidc/callback?code=code-1&state=forged"))
        .header("cookie", "countersign_oidc=real.nonce.verifier.%2Fui%2F")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_decision_on_an_old_provider_sign_in_asks_for_a_fresh_one() {
    let (t, fake) = spawn_oidc().await;
    let (id, _) = t
        .request(serde_json::json!({
            "action": "db.drop", "resource": "prod/orders", "summary": "Drop the orders table", "risk": "critical",
        }))
        .await;
    // Dan's provider session is ten minutes old.
    fake.sign_in_as(dan(None, 600));
    let b = Browser::start().await;
    b.goto(&t.url(&format!("/ui/login?next=/ui/requests/{id}")))
        .await;
    b.click("#oidc").await;
    b.wait_text("re-type the resource").await;
    b.fill("#confirmation", "prod/orders").await;
    b.click("#approve").await;
    b.wait_text(&countersign::domain::rules::Refusal::SignInTooOld.message())
        .await;
    assert_eq!(t.status(&id).await, "pending");

    b.click("#reauth").await;
    b.wait_text("re-type the resource").await;
    assert_eq!(fake.authorizations().last().unwrap()["max_age"], "300");
    b.fill("#confirmation", "prod/orders").await;
    b.click("#approve").await;
    b.wait_text("You approved this request.").await;
    assert_eq!(t.status(&id).await, "approved");
    b.stop().await;
}
