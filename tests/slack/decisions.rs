//! Deciding from Slack: Approve, Deny with a reason, identity, and every
//! click the decision rules refuse.

use std::time::Duration;

use serde_json::{Value, json};
use slack_morphism::prelude::SlackView;

use crate::helpers::*;
use crate::support::*;

const APPROVE: &str = "countersign_approve";
const DENY: &str = "countersign_deny";

#[tokio::test]
async fn approve_by_another_user_records_the_decision_updates_the_message_and_answers_the_long_poll()
 {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;

    let poll = {
        let client = t.app.client.clone();
        let url = t.app.url(&format!("/v1/approvals/{id}?wait=30"));
        let agent = agent.clone();
        tokio::spawn(async move {
            let res = client.get(url).bearer_auth(agent).send().await.unwrap();
            res.json::<Value>().await.unwrap()
        })
    };
    // Let the long-poll start waiting.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let res = t
        .click(BOB, APPROVE, &button(&post, APPROVE).unwrap())
        .await;
    assert_eq!(res.status(), 200);

    let answered = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("the long-poll is answered")
        .unwrap();
    assert_eq!(answered["status"], "approved");
    assert_eq!(
        answered["approvals"][0]["principal"],
        "user:bob@example.com"
    );
    assert_eq!(answered["approvals"][0]["channel"], "slack");

    let update = t.wait_update("approved").await;
    assert_eq!(update.body["channel"], CHANNEL);
    let ts = t.app.chat_message(&id, "slack").await.unwrap().message_id;
    assert_eq!(
        update.body["ts"],
        ts.as_str(),
        "the same message, updated in place"
    );
    assert!(
        button(&update, APPROVE).is_none(),
        "buttons removed once final"
    );
    assert!(
        texts(&update).contains(&format!("<@{BOB}>")),
        "names who approved"
    );
    // Once in the approvals channel (Alice, for whom the agent acted, is
    // told the outcome in a direct message of her own).
    let in_channel = |c: &&crate::fake_slack::Call| c.body["channel"] == CHANNEL;
    assert_eq!(
        t.fake
            .successes("chat.postMessage")
            .iter()
            .filter(in_channel)
            .count(),
        1
    );
    let kinds = t.app.audit_kinds(&id).await;
    for k in ["decision.approve", "request.approved"] {
        assert!(kinds.contains(&k.to_string()), "{k} in {kinds:?}");
    }
    assert!(
        t.fake.calls("chat.postEphemeral").is_empty(),
        "no complaint to Bob"
    );
}

async fn refused_self_approval(user: &str, expected: &str) {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let before = t.app.audit_kinds(&id).await;

    let res = t
        .click(user, APPROVE, &button(&post, APPROVE).unwrap())
        .await;
    assert_eq!(res.status(), 200, "Slack is always acknowledged");

    let told = t.ephemeral_to(user).await;
    assert!(told.contains(expected), "explained: {told}");
    let ephemeral = &t.fake.successes("chat.postEphemeral")[0];
    assert_eq!(ephemeral.body["channel"], CHANNEL);

    let after = t.app.audit_kinds(&id).await;
    assert_eq!(after.len(), before.len() + 1, "one audit event: {after:?}");
    assert_eq!(after.last().unwrap(), "decision.blocked");
    assert_eq!(t.decisions(&id).await, 0);
    assert_eq!(t.status(&id).await, "pending");
    let updates = t
        .app
        .outbox()
        .await
        .iter()
        .filter(|r| r.kind == "slack.update")
        .count();
    assert_eq!(updates, 0, "the message is left alone");
}

#[tokio::test]
async fn the_requesters_own_slack_account_cannot_approve() {
    // Olivia owns the API key the agent used.
    refused_self_approval(OLIVIA, "You own the API key that requested this action").await;
}

#[tokio::test]
async fn the_slack_account_of_the_human_the_agent_acts_for_cannot_approve() {
    refused_self_approval(ALICE, "requested on your behalf").await;
}

#[tokio::test]
async fn a_quorum_of_two_needs_two_distinct_slack_users_and_a_second_click_counts_once() {
    let t = spawn_slack(Some(
        "rules:\n  - name: two-person\n    action: db.export\n    effect: require_approval\n    approvals: 2\n",
    ))
    .await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let value = button(&post, APPROVE).unwrap();
    assert!(texts(&post).contains("0 of 2 approvals"));

    t.click(BOB, APPROVE, &value).await;
    let update = t.wait_update("1 of 2 approvals").await;
    assert!(texts(&update).contains(&format!("1 of 2 approvals* — <@{BOB}>")));
    assert!(button(&update, APPROVE).is_some(), "still open");

    t.click(BOB, APPROVE, &value).await;
    let told = t.ephemeral_to(BOB).await;
    assert!(told.contains("already approved"), "{told}");
    assert_eq!(t.decisions(&id).await, 1, "the same user counts once");
    assert_eq!(t.status(&id).await, "pending");

    t.click(DAN, APPROVE, &value).await;
    let update = t.wait_update("approved").await;
    let shown = texts(&update);
    assert!(shown.contains(&format!("<@{BOB}>")) && shown.contains(&format!("<@{DAN}>")));
    assert_eq!(t.status(&id).await, "approved");
    assert_eq!(t.decisions(&id).await, 2);
}

#[tokio::test]
async fn deny_opens_a_modal_and_the_reason_given_there_is_recorded() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;

    let res = t.click(BOB, DENY, &button(&post, DENY).unwrap()).await;
    assert_eq!(res.status(), 200);
    let opened = t.fake.wait_for("views.open", 1).await.remove(0);
    assert_eq!(opened.body["trigger_id"], format!("trigger-{BOB}"));
    let view: SlackView =
        serde_json::from_value(opened.body["view"].clone()).expect("a Block Kit modal");
    assert!(matches!(view, SlackView::Modal(_)));
    assert_eq!(
        t.status(&id).await,
        "pending",
        "nothing decided by opening the modal"
    );

    let res = t
        .submit_denial(BOB, &opened, "Not during the freeze <!channel>")
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.text().await.unwrap().is_empty(),
        "an empty answer closes the modal"
    );

    eventually("the denial", || async { t.status(&id).await == "denied" }).await;
    let a: Value = t.app.approval(&agent, &id).await;
    assert_eq!(a["denial"]["principal"], "user:bob@example.com");
    assert_eq!(a["denial"]["comment"], "Not during the freeze <!channel>");
    assert_eq!(a["denial"]["channel"], "slack");

    let update = t.wait_update("denied").await;
    let shown = texts(&update);
    assert!(
        shown.contains("Not during the freeze &lt;!channel&gt;"),
        "{shown}"
    );
    assert!(button(&update, DENY).is_none());
}

#[tokio::test]
async fn a_denial_without_a_reason_keeps_the_modal_open_and_records_nothing() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    t.click(BOB, DENY, &button(&post, DENY).unwrap()).await;
    let opened = t.fake.wait_for("views.open", 1).await.remove(0);

    let res = t.submit_denial(BOB, &opened, "   ").await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["response_action"], "errors");
    assert!(
        answer["errors"]["reason"]
            .as_str()
            .unwrap()
            .contains("reason")
    );
    assert_eq!(t.status(&id).await, "pending");
    assert_eq!(t.decisions(&id).await, 0);
}

#[tokio::test]
async fn an_unmapped_slack_user_cannot_decide_and_the_attempts_are_audited() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let before = t.app.audit_kinds(&id).await;

    t.click(NOMAIL, APPROVE, &button(&post, APPROVE).unwrap())
        .await;
    let told = t.ephemeral_to(NOMAIL).await;
    assert!(told.contains("cannot tell who you are"), "{told}");
    assert!(
        told.contains(&format!("identities link slack:{TEAM}/{NOMAIL}")),
        "says how to fix it: {told}"
    );
    t.click(NOMAIL, DENY, &button(&post, DENY).unwrap()).await;
    eventually("a second explanation", || async {
        t.fake.successes("chat.postEphemeral").len() == 2
    })
    .await;
    assert!(
        t.fake.calls("views.open").is_empty(),
        "no deny form for an unknown person"
    );
    // Both clicks are audited, as on Teams, by an actor that names the
    // account without claiming it is anyone.
    let mut after = before.clone();
    after.extend([
        "decision.blocked".to_string(),
        "decision.blocked".to_string(),
    ]);
    eventually("both clicks audited", || async {
        t.app.audit_kinds(&id).await == after
    })
    .await;
    let blocked = t.app.events_of(&id, "decision.blocked").await;
    assert!(
        blocked.iter().all(
            |(actor, data)| *actor == format!("unmapped:slack:{TEAM}/{NOMAIL}")
                && data["reason"] == "unknown_person"
                && data["channel"] == "slack"
        ),
        "{blocked:?}"
    );
    assert_eq!(t.decisions(&id).await, 0);
}

#[tokio::test]
async fn an_operator_link_maps_a_slack_account_and_wins_over_its_email() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let out = t
        .cli(&[
            "identities",
            "link",
            &format!("slack:{TEAM}/{NOMAIL}"),
            "user:erin@example.com",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    t.click(NOMAIL, APPROVE, &button(&post, APPROVE).unwrap())
        .await;
    eventually("the approval", || async {
        t.status(&id).await == "approved"
    })
    .await;
    let a: Value = t.app.approval(&agent, &id).await;
    assert_eq!(a["approvals"][0]["principal"], "user:erin@example.com");
    assert!(
        t.fake.calls("users.info").is_empty(),
        "a link needs no lookup"
    );

    // A link to the on-behalf-of human is still that human: refused.
    let out = t
        .cli(&[
            "identities",
            "link",
            &format!("slack:{TEAM}/{DAN}"),
            "user:alice@example.com",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (id2, post2) = t.create_posted(&agent, export_request()).await;
    t.click(DAN, APPROVE, &button(&post2, APPROVE).unwrap())
        .await;
    let told = t.ephemeral_to(DAN).await;
    assert!(told.contains("on your behalf"), "{told}");
    assert_eq!(t.status(&id2).await, "pending");
}

#[tokio::test]
async fn a_click_on_a_final_request_is_told_who_decided_and_audited() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let value = button(&post, APPROVE).unwrap();
    t.click(BOB, APPROVE, &value).await;
    eventually("the approval", || async {
        t.status(&id).await == "approved"
    })
    .await;

    t.click(DAN, APPROVE, &value).await;
    let told = t.ephemeral_to(DAN).await;
    assert!(told.contains("already approved"), "{told}");
    assert!(told.contains("bob@example.com"), "says who decided: {told}");
    assert_eq!(t.count_kind(&id, "decision.blocked").await, 1);
    assert_eq!(t.decisions(&id).await, 1);
}

#[tokio::test]
async fn someone_the_rule_does_not_name_is_refused_with_a_reason() {
    let t = spawn_slack(Some(
        "groups:\n  dba: [user:carol@example.com]\nrules:\n  - name: dba-only\n    action: db.export\n    effect: require_approval\n    approvers: [group:dba]\n",
    ))
    .await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    t.click(BOB, APPROVE, &button(&post, APPROVE).unwrap())
        .await;
    let told = t.ephemeral_to(BOB).await;
    assert!(told.contains("not one of the approvers"), "{told}");
    assert_eq!(t.count_kind(&id, "decision.blocked").await, 1);
    t.click(CAROL, APPROVE, &button(&post, APPROVE).unwrap())
        .await;
    eventually("the approval", || async {
        t.status(&id).await == "approved"
    })
    .await;
}

#[tokio::test]
async fn a_button_bound_to_another_payload_is_refused() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;
    let forged = json!({ "request_id": id, "payload_sha256": "0".repeat(64) }).to_string();
    t.click(BOB, APPROVE, &forged).await;
    let told = t.ephemeral_to(BOB).await;
    assert!(told.contains("decide on what you were shown"), "{told}");
    assert_eq!(t.decisions(&id).await, 0);
}

#[tokio::test]
async fn slack_profiles_are_looked_up_once_and_then_cached() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    for _ in 0..2 {
        let (id, post) = t.create_posted(&agent, export_request()).await;
        t.click(BOB, APPROVE, &button(&post, APPROVE).unwrap())
            .await;
        eventually("the approval", || async {
            t.status(&id).await == "approved"
        })
        .await;
    }
    let lookups = t.fake.calls("users.info");
    assert_eq!(lookups.len(), 1, "{lookups:#?}");
    assert_eq!(lookups[0].body["user"], BOB);
}

#[tokio::test]
async fn a_slow_slack_still_gets_its_acknowledgement_and_the_click_still_counts() {
    let t = spawn_slack(None).await;
    t.fake.delay("users.info", Duration::from_secs(3));
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let res = t
        .click(BOB, APPROVE, &button(&post, APPROVE).unwrap())
        .await;
    assert_eq!(res.status(), 200);
    eventually("the approval", || async {
        t.status(&id).await == "approved"
    })
    .await;
}
