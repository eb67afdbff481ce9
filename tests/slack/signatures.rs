//! Every inbound Slack request is authenticated before anything in it is
//! read: a bad or missing signature, or a timestamp more than 5 minutes
//! off, is a 401 and changes nothing.

use crate::helpers::*;
use crate::support::*;

/// A way to get it wrong: what it is, the headers sent, the body sent.
type Case = (&'static str, Vec<(&'static str, String)>, String);

/// Everything a refused request could have changed.
async fn snapshot(t: &SlackTest, id: &str) -> (Vec<String>, i64, String, usize) {
    (
        t.all_kinds().await,
        t.decisions(id).await,
        t.status(id).await,
        [
            "users.info",
            "chat.postEphemeral",
            "views.open",
            "chat.update",
        ]
        .iter()
        .map(|m| t.fake.calls(m).len())
        .sum(),
    )
}

#[tokio::test]
async fn forged_signatures_stale_timestamps_and_missing_headers_are_refused_with_401_and_change_nothing()
 {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let click = form(&[(
        "payload",
        &t.block_actions(
            BOB,
            "countersign_approve",
            &button(&post, "countersign_approve").unwrap(),
        )
        .to_string(),
    )]);
    let command = form(&[
        ("team_id", TEAM),
        ("user_id", CAROL),
        ("command", "/audit"),
        ("text", "pending"),
        ("response_url", &t.fake.response_url("x")),
    ]);
    let before = snapshot(&t, &id).await;

    for (path, body) in [
        ("/slack/interactions", &click),
        ("/slack/commands", &command),
    ] {
        let ts = now();
        let cases: Vec<Case> = vec![
            (
                "signed with another secret",
                vec![
                    ("x-slack-request-timestamp", ts.to_string()),
                    ("x-slack-signature", sign("not-the-secret", ts, body)),
                ],
                body.clone(),
            ),
            (
                "a body changed after signing",
                vec![
                    ("x-slack-request-timestamp", ts.to_string()),
                    ("x-slack-signature", sign(SECRET, ts, body)),
                ],
                body.replace("U0BOB", "U0DAN").replace("U0CAROL", "U0DAN"),
            ),
            (
                "a timestamp ten minutes old",
                vec![
                    ("x-slack-request-timestamp", (ts - 600).to_string()),
                    ("x-slack-signature", sign(SECRET, ts - 600, body)),
                ],
                body.clone(),
            ),
            (
                "a timestamp ten minutes ahead",
                vec![
                    ("x-slack-request-timestamp", (ts + 600).to_string()),
                    ("x-slack-signature", sign(SECRET, ts + 600, body)),
                ],
                body.clone(),
            ),
            (
                "a timestamp that is not a number",
                vec![
                    ("x-slack-request-timestamp", "yesterday".into()),
                    ("x-slack-signature", sign(SECRET, ts, body)),
                ],
                body.clone(),
            ),
            (
                "no signature",
                vec![("x-slack-request-timestamp", ts.to_string())],
                body.clone(),
            ),
            (
                "no timestamp",
                vec![("x-slack-signature", sign(SECRET, ts, body))],
                body.clone(),
            ),
            ("no headers at all", vec![], body.clone()),
            (
                "a malformed signature",
                vec![
                    ("x-slack-request-timestamp", ts.to_string()),
                    ("x-slack-signature", "v0=zz".into()),
                ],
                body.clone(),
            ),
        ];
        for (case, headers, sent) in cases {
            let res = t.post_raw(path, sent, &headers).await;
            assert_eq!(res.status(), 401, "{path}: {case}");
            assert_eq!(
                res.headers()["content-type"],
                "application/problem+json",
                "{path}: {case}"
            );
        }
    }
    // Let any wrongly started background work show itself.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(snapshot(&t, &id).await, before);

    // The same click, properly signed four minutes ago, is accepted.
    let ts = now() - 240;
    let res = t
        .post_raw(
            "/slack/interactions",
            click.clone(),
            &[
                ("x-slack-request-timestamp", ts.to_string()),
                ("x-slack-signature", sign(SECRET, ts, &click)),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    eventually("the approval", || async {
        t.status(&id).await == "approved"
    })
    .await;
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let t = spawn_slack(None).await;
    let body = format!("payload={}", "x".repeat(200 * 1024));
    let res = t.signed("/slack/interactions", body).await;
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn a_signed_request_that_is_not_an_interaction_is_a_400() {
    let t = spawn_slack(None).await;
    let res = t
        .signed("/slack/interactions", "payload=not-json".into())
        .await;
    assert_eq!(res.status(), 400);
    let res = t.signed("/slack/interactions", "nothing=here".into()).await;
    assert_eq!(res.status(), 400);
}
