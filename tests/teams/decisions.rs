use serde_json::Value;

use crate::bot::*;

const QUORUM: &str = "
groups:
  sre: [user:bob@example.com, user:dave@example.com, user:carol@example.com]
rules:
  - name: prod-exports
    action: db.export
    effect: require_approval
    approvals: 2
    approvers: [group:sre]
    expires_in: 30m
";

async fn status(t: &TeamsApp, agent: &str, id: &str) -> String {
    t.app.status_of(agent, id).await
}

#[tokio::test]
async fn an_approval_by_another_user_decides_updates_both_cards_and_answers_the_waiting_agent() {
    let t = spawn_teams().await;
    let (agent, request, post) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap().to_string();
    let activity_id = "activity-1";
    let path = format!("/v1/approvals/{id}?wait=30");
    let poll = t.app.get(&agent, &path);
    let click = async {
        // Let the long poll start waiting first; correctness does not
        // depend on it (the poll reads the state before it waits).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        t.click("bob", "approve", &request, None).await
    };
    let (polled, card) = tokio::join!(poll, click);
    let polled: Value = polled.json().await.unwrap();
    assert_eq!(polled["status"], "approved");
    assert_eq!(polled["approvals"][0]["principal"], "user:bob@example.com");
    assert_eq!(polled["approvals"][0]["channel"], "teams");

    let text = card_text(&card);
    assert!(text.contains("Approved"), "{text}");
    assert!(text.contains("You approved this request"), "{text}");
    assert!(verbs(&card).is_empty(), "a final card has no buttons");

    let calls =
        t.bf.wait_for("the posted card to be updated", |c| {
            c.iter()
                .any(|c| c.is_update() && card_text(c.card()).contains("Approved"))
        })
        .await;
    let update = calls.iter().rev().find(|c| c.is_update()).unwrap();
    assert_eq!(update.segments[2], post.conversation());
    assert_eq!(update.segments[4], activity_id);
    assert_eq!(update.body["id"], activity_id);
    countersign::channels::teams::card::check_adaptive_card(update.card()).unwrap();
    assert!(verbs(update.card()).is_empty());
    let kinds = t.app.audit_kinds(&id).await;
    for k in ["decision.approve", "request.approved", "teams.posted"] {
        assert!(kinds.contains(&k.to_string()), "{k} in {kinds:?}");
    }
    crate::bot::eventually("the update to be audited", || async {
        t.app
            .audit_kinds(&id)
            .await
            .contains(&"teams.updated".to_string())
    })
    .await;
}

#[tokio::test]
async fn a_deny_with_a_reason_denies_and_shows_the_reason() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    let card = t
        .click("bob", "deny", &request, Some("Not during the freeze"))
        .await;
    let text = card_text(&card);
    assert!(text.contains("Denied"), "{text}");
    assert!(text.contains("Not during the freeze"), "{text}");
    assert!(verbs(&card).is_empty());
    assert_eq!(status(&t, &agent, id).await, "denied");
    let v: Value = t.app.approval(&agent, id).await;
    assert_eq!(v["denial"]["comment"], "Not during the freeze");
    assert_eq!(v["denial"]["principal"], "user:bob@example.com");
    t.bf.wait_for("the card to show the denial", |c| {
        c.iter()
            .any(|c| c.is_update() && card_text(c.card()).contains("Not during the freeze"))
    })
    .await;
}

#[tokio::test]
async fn a_deny_without_a_reason_is_refused_with_a_message_and_changes_nothing() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    for reason in [None, Some("   ")] {
        let card = t.click("bob", "deny", &request, reason).await;
        let text = card_text(&card);
        assert!(text.contains("A denial needs a reason"), "{text}");
        assert_eq!(verbs(&card), ["approve", "deny"], "the buttons stay");
    }
    assert_eq!(status(&t, &agent, id).await, "pending");
    assert_eq!(t.app.count("decisions").await, 0);
}

#[tokio::test]
async fn the_human_an_agent_acts_for_cannot_approve_and_the_refusal_is_audited() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    let card = t.click("alice", "approve", &request, None).await;
    let text = card_text(&card);
    assert!(text.contains("requested on your behalf"), "{text}");
    assert_eq!(verbs(&card), ["approve", "deny"]);
    assert_eq!(status(&t, &agent, id).await, "pending");
    assert!(
        t.app
            .audit_kinds(id)
            .await
            .contains(&"decision.blocked".to_string())
    );
    let blocked = t
        .app
        .events(countersign::store::trail::AuditFilter {
            request_id: Some(id.parse().unwrap()),
            kind: Some("decision.blocked".into()),
            ..Default::default()
        })
        .await;
    let (actor, data) = (&blocked[0].actor, &blocked[0].data);
    assert_eq!(actor, "user:alice@example.com");
    assert!(
        data.contains("self_approval") && data.contains("teams"),
        "{data}"
    );
}

#[tokio::test]
async fn a_human_requester_cannot_approve_their_own_request_from_teams() {
    let t = spawn_teams().await;
    let erin = t
        .app
        .key("user:erin@example.com", None, "request,read")
        .await;
    let request = t.app.create_default(&erin).await;
    t.bf.wait_for_post().await;
    let id = request["id"].as_str().unwrap();
    let card = t.click("erin", "approve", &request, None).await;
    let text = card_text(&card);
    assert!(text.contains("You requested this action"), "{text}");
    assert_eq!(t.app.status_of(&erin, id).await, "pending");
    assert!(
        t.app
            .audit_kinds(id)
            .await
            .contains(&"decision.blocked".to_string())
    );
}

#[tokio::test]
async fn the_owner_of_the_requesting_key_cannot_approve_from_teams() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let card = t.click("olivia", "approve", &request, None).await;
    assert!(card_text(&card).contains("You own the API key"));
    assert_eq!(
        status(&t, &agent, request["id"].as_str().unwrap()).await,
        "pending"
    );
}

#[tokio::test]
async fn a_quorum_needs_two_distinct_people_and_one_person_counts_once() {
    let t = spawn_teams_with_policy(QUORUM).await;
    let (agent, request, post) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    assert!(card_text(post.card()).contains("Approvals: 0 of 2"));

    let first = t.click("bob", "approve", &request, None).await;
    let text = card_text(&first);
    assert!(text.contains("Your approval is recorded: 1 of 2"), "{text}");
    assert!(text.contains("Approvals: 1 of 2"), "{text}");
    assert_eq!(
        verbs(&first),
        ["approve", "deny"],
        "still pending, still buttons"
    );
    assert_eq!(status(&t, &agent, id).await, "pending");
    t.bf.wait_for("the card to show one approval", |c| {
        c.iter()
            .any(|c| c.is_update() && card_text(c.card()).contains("Approvals: 1 of 2"))
    })
    .await;

    let again = t.click("bob", "approve", &request, None).await;
    assert!(card_text(&again).contains("one person counts once"));
    assert_eq!(status(&t, &agent, id).await, "pending");

    let second = t.click("dave", "approve", &request, None).await;
    let text = card_text(&second);
    assert!(text.contains("Approved"), "{text}");
    assert!(
        text.contains("bob@example.com") && text.contains("dave@example.com"),
        "{text}"
    );
    assert!(verbs(&second).is_empty());
    assert_eq!(status(&t, &agent, id).await, "approved");
    assert_eq!(t.app.count("decisions").await, 2);
}

#[tokio::test]
async fn someone_the_policy_does_not_name_cannot_approve() {
    let t = spawn_teams_with_policy(QUORUM).await;
    let (agent, request, _) = t.create_and_post().await;
    let card = t.click("erin", "approve", &request, None).await;
    assert!(card_text(&card).contains("not one of the approvers"));
    assert_eq!(
        status(&t, &agent, request["id"].as_str().unwrap()).await,
        "pending"
    );
}

#[tokio::test]
async fn a_click_on_a_decided_request_says_who_decided() {
    let t = spawn_teams().await;
    let (_, request, _) = t.create_and_post().await;
    t.click("bob", "approve", &request, None).await;
    let late = t.click("dave", "deny", &request, Some("too late?")).await;
    let text = card_text(&late);
    assert!(text.contains("already approved"), "{text}");
    assert!(text.contains("user:bob@example.com"), "{text}");
    assert!(verbs(&late).is_empty());
    assert_eq!(t.app.count("decisions").await, 1);
}

#[tokio::test]
async fn an_account_that_maps_to_no_one_cannot_decide_and_the_attempt_is_audited() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    let card = t.click("mallory", "approve", &request, None).await;
    let text = card_text(&card);
    assert!(text.contains("cannot tell who you are"), "{text}");
    assert!(text.contains("teams:aad-mallory"), "{text}");
    assert_eq!(status(&t, &agent, id).await, "pending");
    assert!(
        t.app
            .audit_kinds(id)
            .await
            .contains(&"decision.blocked".to_string())
    );
}

#[tokio::test]
async fn an_operators_link_maps_a_teams_account_to_a_person() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let out = t
        .app
        .cli(&[
            "identities",
            "link",
            "teams:aad-zed",
            "user:dave@example.com",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card = t.click("zed", "approve", &request, None).await;
    assert!(card_text(&card).contains("You approved this request"));
    let v: Value = t
        .app
        .get(
            &agent,
            &format!("/v1/approvals/{}", request["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["approvals"][0]["principal"], "user:dave@example.com");
    assert!(
        !t.bf
            .calls()
            .iter()
            .any(|c| c.is_member_lookup() && c.segments[4] == "29:zed"),
        "a link is used without a lookup"
    );
}

#[tokio::test]
async fn a_member_lookup_is_cached_between_clicks() {
    let t = spawn_teams_with_policy(QUORUM).await;
    let (_, request, _) = t.create_and_post().await;
    t.click("bob", "approve", &request, None).await;
    t.click("bob", "approve", &request, None).await;
    let lookups =
        t.bf.calls()
            .iter()
            .filter(|c| c.is_member_lookup() && c.segments[4] == "29:bob")
            .count();
    assert_eq!(lookups, 1);
}

#[tokio::test]
async fn a_card_whose_payload_hash_does_not_match_the_request_cannot_decide() {
    let t = spawn_teams().await;
    let (agent, mut request, _) = t.create_and_post().await;
    request["payload_sha256"] = serde_json::json!("0".repeat(64));
    let card = t.click("bob", "approve", &request, None).await;
    assert!(card_text(&card).contains("decide on what you were shown"));
    assert_eq!(
        status(&t, &agent, request["id"].as_str().unwrap()).await,
        "pending"
    );
}

#[tokio::test]
async fn two_clicks_at_the_same_moment_make_one_decision_and_the_loser_is_told_who_decided() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let (a, b) = tokio::join!(
        t.click("bob", "approve", &request, None),
        t.click("dave", "deny", &request, Some("no")),
    );
    assert_eq!(t.app.count("decisions").await, 1);
    let status = status(&t, &agent, request["id"].as_str().unwrap()).await;
    let (winner, loser) = if status == "approved" { (a, b) } else { (b, a) };
    assert!(verbs(&winner).is_empty() && verbs(&loser).is_empty());
    let text = card_text(&loser);
    assert!(text.contains(&format!("already {status}")), "{text}");
}

#[tokio::test]
async fn an_expired_request_card_loses_its_buttons() {
    let t = spawn_teams().await;
    let agent = t.app.agent().await;
    let mut body = crate::helpers::export_request();
    body["expires_in"] = serde_json::json!("1s");
    let request = t.app.create(&agent, body).await;
    t.bf.wait_for("the card to show the expiry", |c| {
        c.iter()
            .any(|c| c.is_update() && card_text(c.card()).contains("Expired"))
    })
    .await;
    let update = t.bf.updates().pop().unwrap();
    assert!(verbs(update.card()).is_empty());
    let late = t.click("bob", "approve", &request, None).await;
    assert!(card_text(&late).contains("already expired"));
}
