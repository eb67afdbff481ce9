use crate::bot::*;

const AUDITORS: &str = "
groups:
  auditors: [user:carol@example.com]
rules: []
";

/// Sends `text` to the bot as `who` and returns the card of its reply.
async fn ask(t: &TeamsApp, who: &str, text: &str, mentions: &[&str]) -> serde_json::Value {
    let before = t.bf.replies().len();
    let activity = t.message_activity(who, text, mentions);
    let res = t.send(&activity).await;
    assert_eq!(res.status(), 200);
    let calls =
        t.bf.wait_for("the bot's reply", |c| {
            c.iter().filter(|c| c.is_reply()).count() > before
        })
        .await;
    let reply = calls
        .into_iter()
        .filter(|c| c.is_reply())
        .nth(before)
        .unwrap();
    assert_eq!(reply.conversation(), CONVERSATION);
    assert_eq!(
        reply.segments[4],
        activity["id"].as_str().unwrap(),
        "a reply in the thread"
    );
    let card = reply.card().clone();
    countersign::channels::teams::card::check_adaptive_card(&card)
        .unwrap_or_else(|e| panic!("{e}\n{card:#}"));
    card
}

#[tokio::test]
async fn an_auditor_lists_pending_requests() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    let (_, request, _) = t.create_and_post().await;
    let card = ask(&t, "carol", "audit pending", &[]).await;
    let text = card_text(&card);
    assert!(text.contains("Pending requests"), "{text}");
    assert!(text.contains(request["id"].as_str().unwrap()), "{text}");
    assert!(text.contains("db.export"), "{text}");
}

#[tokio::test]
async fn an_auditor_reads_one_requests_timeline() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    let (_, request, _) = t.create_and_post().await;
    t.click("bob", "deny", &request, Some("freeze")).await;
    let id = request["id"].as_str().unwrap();
    let card = ask(&t, "carol", &format!("audit {id}"), &[]).await;
    let text = card_text(&card);
    for shown in [
        "request.created",
        "policy.evaluated",
        "decision.deny",
        "request.denied",
        "freeze",
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
}

#[tokio::test]
async fn an_auditor_verifies_the_trail_from_teams() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    t.create_and_post().await;
    let card = ask(&t, "carol", "audit verify", &[]).await;
    assert!(card_text(&card).contains("The audit trail verifies"));
}

#[tokio::test]
async fn an_auditor_asks_what_a_mentioned_person_decided() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    let (_, request, _) = t.create_and_post().await;
    t.click("bob", "approve", &request, None).await;
    let card = ask(&t, "carol", "audit @bob", &["bob"]).await;
    let text = card_text(&card);
    assert!(
        text.contains("What bob@example.com requested and decided"),
        "{text}"
    );
    assert!(text.contains("decision.approve"), "{text}");
}

#[tokio::test]
async fn someone_outside_the_auditors_group_is_refused() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    t.create_and_post().await;
    let card = ask(&t, "bob", "audit pending", &[]).await;
    let text = card_text(&card);
    assert!(text.contains("Not allowed"), "{text}");
    assert!(
        text.contains("not in the policy's auditors group"),
        "{text}"
    );
    assert!(!text.contains("db.export"), "{text}");
}

#[tokio::test]
async fn a_command_the_bot_does_not_know_gets_the_usage() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    let card = ask(&t, "carol", "hello there", &[]).await;
    assert!(card_text(&card).contains("Usage: audit"));
    let card = ask(&t, "carol", "audit drop tables", &[]).await;
    assert!(card_text(&card).contains("did not understand"));
}

#[tokio::test]
async fn audit_login_answers_with_a_one_time_console_link() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    let card = ask(&t, "bob", "audit login", &[]).await;
    let text = card_text(&card);
    assert!(text.contains("/ui/login/"), "{text}");
    assert!(
        text.contains("valid for 5 minutes and usable once"),
        "{text}"
    );
}
