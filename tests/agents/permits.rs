//! Signed permits: issued on approval, served to the requester, verified
//! offline against the JWKS, redeemed once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_with, spawn_with_policy};
use crate::support::*;

const ALLOW: &str = "rules:\n  - name: deploys\n    action: deploy\n    effect: allow\ndefault:\n  effect: require_approval\n  expires_in: 10m\n";

fn deploy() -> Value {
    json!({"action": "deploy", "resource": "prod/web", "summary": "Deploy web", "details": {"version": "1.4.2"}})
}

/// An approved request (a person approved it) and its permit.
async fn approved(app: &TestApp) -> (Value, String) {
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let a = app.create(&agent, deploy()).await;
    let id = a["id"].as_str().unwrap();
    let after: Value = app
        .decide(&bob, id, "approve", Some("ok"))
        .await
        .json()
        .await
        .unwrap();
    let res = app.get(&agent, &format!("/v1/approvals/{id}/permit")).await;
    assert_eq!(res.status(), 200);
    let p: Value = res.json().await.unwrap();
    (after, p["permit"].as_str().unwrap().to_string())
}

async fn verify(app: &TestApp, token: &str, extra: &[&str]) -> std::process::Output {
    let jwks = app.url("/.well-known/jwks.json");
    let mut args = vec!["permit", "verify", token, "--jwks", &jwks];
    args.extend_from_slice(extra);
    run(agent_cmd(&app.base, "", &args), "").await
}

#[tokio::test]
async fn an_approved_request_earns_a_permit_that_verifies_with_the_jwks() {
    let app = spawn_app().await;
    let (a, token) = approved(&app).await;
    let hash = a["payload_sha256"].as_str().unwrap();
    let out = verify(
        &app,
        &token,
        &[
            "--action",
            "deploy",
            "--resource",
            "prod/web",
            "--payload-sha256",
            hash,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["jti"], a["id"]);
    assert_eq!(claims["sub"], "agent:deploy-bot");
    assert_eq!(claims["iss"], app.base);
    assert_eq!(claims["approvers"], json!(["user:bob@example.com"]));
    assert_eq!(claims["policy"]["rule"], a["policy"]["rule"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    // Any JOSE library verifies it from the JWKS alone.
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the kid is in the JWKS");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .expect("verifies");

    // The same token each time it is fetched, and through the requester only (or a read key).
    let agent2 = app.key("agent:other", None, "request").await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(
        app.get(&agent2, &format!("/v1/approvals/{id}/permit"))
            .await
            .status(),
        404
    );
    let watcher = reader(&app).await;
    let again: Value = app
        .get(&watcher, &format!("/v1/approvals/{id}/permit"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["permit"], token);
}

#[tokio::test]
async fn a_permit_with_any_claim_altered_fails_verification() {
    let app = spawn_app().await;
    let (_, token) = approved(&app).await;
    let parts: Vec<&str> = token.split('.').collect();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let changes = [
        ("jti", json!("0190c0de-0000-7000-8000-000000000000")),
        ("iss", json!("https://evil.example")),
        ("sub", json!("agent:other")),
        ("action", json!("deploy.all")),
        ("resource", json!("prod/db")),
        ("payload_sha256", json!("0".repeat(64))),
        ("approvers", json!(["user:mallory@example.com"])),
        ("policy", json!({"rule": "yolo", "version": "x"})),
        ("iat", json!(claims["iat"].as_i64().unwrap() + 3600)),
        ("exp", json!(claims["exp"].as_i64().unwrap() + 86400)),
    ];
    for (claim, value) in changes {
        let mut c = claims.clone();
        c[claim] = value;
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(c.to_string()),
            parts[2]
        );
        let out = verify(&app, &forged, &[]).await;
        assert_eq!(out.status.code(), Some(1), "altered {claim} verified");
        assert!(
            stderr(&out).contains("signature"),
            "{claim}: {}",
            stderr(&out)
        );
    }
    // And the untouched one still verifies, but not as a permit for something else.
    assert_eq!(verify(&app, &token, &[]).await.status.code(), Some(0));
    let out = verify(&app, &token, &["--resource", "prod/db"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("resource"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_permit_fails_against_a_key_from_elsewhere() {
    let app = spawn_app().await;
    let (_, token) = approved(&app).await;
    // A public key that is not the service's.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.pem");
    let elsewhere =
        countersign::permits::PermitKey::load_or_create(&dir.path().join("elsewhere.pem")).unwrap();
    std::fs::write(&other, elsewhere.public_pem()).unwrap();
    let out = run(
        agent_cmd(
            &app.base,
            "",
            &[
                "permit",
                "verify",
                &token,
                "--public-key",
                other.to_str().unwrap(),
            ],
        ),
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("key"), "{}", stderr(&out));

    // The same claims signed by that other key, under the service's kid.
    let parts: Vec<&str> = token.split('.').collect();
    let claims: countersign::permits::Claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let forged = elsewhere.sign(&claims).unwrap();
    let fparts: Vec<&str> = forged.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], fparts[1], fparts[2]);
    let out = verify(&app, &forged, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));

    // Nor can it be redeemed.
    let agent = app.agent().await;
    let res = app
        .post_json(
            &agent,
            &format!("/v1/permits/{}/redeem", claims.jti),
            &json!({"permit": forged}),
        )
        .await;
    assert_eq!(res.status(), 422);

    // With the service's own public key it verifies offline.
    let own = dir.path().join("own.pem");
    let pem = app.cli(&["permit", "public-key"]).await;
    assert!(
        pem.status.success(),
        "{}",
        String::from_utf8_lossy(&pem.stderr)
    );
    std::fs::write(&own, &pem.stdout).unwrap();
    let out = run(
        agent_cmd(
            &app.base,
            "",
            &[
                "permit",
                "verify",
                &token,
                "--public-key",
                own.to_str().unwrap(),
            ],
        ),
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn an_expired_permit_fails_verification_and_is_no_longer_served() {
    // Long enough to fetch the permit on a loaded machine, short enough to
    // wait out; the wait polls instead of guessing how long expiry takes.
    let app = spawn_with(|s| s.permit_ttl = std::time::Duration::from_secs(5)).await;
    let (a, token) = approved(&app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let out = loop {
        let out = verify(&app, &token, &[]).await;
        if out.status.code() != Some(0) || std::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("expir"), "{}", stderr(&out));
    let agent = app.agent().await;
    let id = a["id"].as_str().unwrap();
    let res = app.get(&agent, &format!("/v1/approvals/{id}/permit")).await;
    assert_eq!(res.status(), 409);
    let res = app
        .post_json(
            &agent,
            &format!("/v1/permits/{id}/redeem"),
            &json!({"permit": token}),
        )
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(app.count("permit_redemptions").await, 0);
}

#[tokio::test]
async fn there_is_no_permit_while_pending_or_after_a_denial_and_the_answer_names_the_status() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let a = app.create(&agent, deploy()).await;
    let id = a["id"].as_str().unwrap();
    let res = app.get(&agent, &format!("/v1/approvals/{id}/permit")).await;
    assert_eq!(res.status(), 409);
    let p: Value = res.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("pending"), "{p}");
    app.decide(&bob, id, "deny", Some("no")).await;
    let p: Value = app
        .get(&agent, &format!("/v1/approvals/{id}/permit"))
        .await
        .json()
        .await
        .unwrap();
    assert!(p["detail"].as_str().unwrap().contains("denied"), "{p}");
    assert!(
        !app.audit_kinds(id)
            .await
            .contains(&"permit.issued".to_string())
    );
}

#[tokio::test]
async fn a_second_redeem_is_409_with_who_redeemed_it_and_when() {
    let app = spawn_app().await;
    let (a, token) = approved(&app).await;
    let id = a["id"].as_str().unwrap();
    let target = app.key("service:deployer", None, "read").await;
    let res = app
        .post_json(
            &target,
            &format!("/v1/permits/{id}/redeem"),
            &json!({"permit": token}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["redeemed_by"], "service:deployer");

    let agent = app.agent().await;
    let res = app
        .post_json(
            &agent,
            &format!("/v1/permits/{id}/redeem"),
            &json!({"permit": token}),
        )
        .await;
    assert_eq!(res.status(), 409);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["redeemed_by"], "service:deployer");
    assert_eq!(p["redeemed_at"], first["redeemed_at"]);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("already redeemed by service:deployer"),
        "{p}"
    );

    // Issuing and redeeming are in the trail, and the trail verifies.
    let kinds = app.audit_kinds(id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "permit.issued").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "permit.redeemed").count(),
        1,
        "{kinds:?}"
    );
    let out = app.cli(&["audit", "verify"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn a_redeem_is_refused_for_a_token_of_another_request_or_none() {
    let app = spawn_with_policy(ALLOW).await;
    let agent = app.agent().await;
    let one = app.create(&agent, deploy()).await;
    let two = app.create(&agent, deploy()).await;
    assert_eq!(one["status"], "approved", "policy allow earns a permit too");
    let p: Value = app
        .get(
            &agent,
            &format!("/v1/approvals/{}/permit", one["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .post_json(
            &agent,
            &format!("/v1/permits/{}/redeem", two["id"].as_str().unwrap()),
            &json!({"permit": p["permit"]}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = app
        .post_json(
            &agent,
            &format!("/v1/permits/{}/redeem", one["id"].as_str().unwrap()),
            &json!({"permit": "a.b.c"}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = app
        .post_json(
            &agent,
            &format!("/v1/permits/{}/redeem", one["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let nobody = app.key("service:x", None, "audit").await;
    let res = app
        .post_json(
            &nobody,
            &format!("/v1/permits/{}/redeem", one["id"].as_str().unwrap()),
            &json!({"permit": p["permit"]}),
        )
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(app.count("permit_redemptions").await, 0);
}

/// A request denied, then flipped to `approved` in the SQLite file behind
/// the service's back, earns no permit: permits come from the trail.
#[tokio::test]
async fn a_request_approved_behind_the_services_back_earns_no_permit() {
    if !crate::helpers::sqlite_file_at_hand(
        "a_request_approved_behind_the_services_back_earns_no_permit",
    ) {
        return;
    }
    let app = spawn_app().await;
    let agent = app.agent().await;
    let bob = app.human("bob@example.com").await;
    let a = app.create(&agent, deploy()).await;
    let id = a["id"].as_str().unwrap();
    app.decide(&bob, id, "deny", Some("no")).await;
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    conn.execute(
        "UPDATE approval_requests SET status = 'approved' WHERE id = ?1",
        [id],
    )
    .unwrap();
    drop(conn);
    let res = app.get(&agent, &format!("/v1/approvals/{id}/permit")).await;
    assert_ne!(res.status(), 200);
    let p: Value = res.json().await.unwrap();
    assert!(p.get("permit").is_none(), "{p}");
}
