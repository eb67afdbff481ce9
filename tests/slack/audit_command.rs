//! `/audit` in Slack: every form answers with ephemeral Block Kit, long
//! answers are paged, and only auditors may ask.

use std::time::Duration;

use serde_json::{Value, json};
use slack_morphism::prelude::SlackBlock;
use sqlx::Connection;

use crate::helpers::*;
use crate::support::*;

const POLICY: &str = "groups:\n  auditors: [user:carol@example.com]\nrules:\n  - name: deploys\n    action: deploy.*\n    effect: require_approval\n";

/// An answer's blocks, checked to be Block Kit, and all their text.
fn shown(answer: &Value) -> String {
    assert_eq!(answer["response_type"], "ephemeral", "{answer:#}");
    let blocks: Vec<SlackBlock> =
        serde_json::from_value(answer["blocks"].clone()).expect("Block Kit blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    assert!(!blocks.iter().any(|b| matches!(b, SlackBlock::Unknown(_))));
    answer["blocks"].to_string()
}

/// Three requests: approved from Slack by Bob, pending, and a deploy.
async fn history(t: &SlackTest) -> (String, String, String) {
    let agent = t.app.agent().await;
    let (approved, post) = t.create_posted(&agent, export_request()).await;
    t.click(
        BOB,
        "countersign_approve",
        &button(&post, "countersign_approve").unwrap(),
    )
    .await;
    eventually("the approval", || async {
        t.status(&approved).await == "approved"
    })
    .await;
    let (pending, _) = t.create_posted(&agent, export_request()).await;
    let mut deploy = export_request();
    deploy["action"] = json!("deploy.prod");
    deploy["resource"] = json!("web");
    let (deploy, _) = t.create_posted(&agent, deploy).await;
    (approved, pending, deploy)
}

#[tokio::test]
async fn audit_alone_lists_recent_requests() {
    let t = spawn_slack(Some(POLICY)).await;
    let (approved, pending, deploy) = history(&t).await;
    let text = shown(&t.audit(CAROL, "").await);
    for id in [&approved, &pending, &deploy] {
        assert!(text.contains(id.as_str()), "{id} listed: {text}");
    }
    assert!(text.contains("Recent requests"));
}

#[tokio::test]
async fn audit_with_a_request_id_shows_its_full_timeline() {
    let t = spawn_slack(Some(POLICY)).await;
    let (approved, _, _) = history(&t).await;
    let answer = t.audit(CAROL, &approved).await;
    let text = shown(&answer);
    let agent = t.app.agent().await;
    let a: Value = t.app.approval(&agent, &approved).await;
    for expected in [
        "request.created",
        "policy.evaluated",
        "decision.approve",
        "request.approved",
        "agent:deploy-bot",
        "user:bob@example.com",
        "via slack",
        a["payload_sha256"].as_str().unwrap(),
        &a["policy"]["version"].as_str().unwrap()[..12],
    ] {
        assert!(
            text.contains(expected),
            "the timeline shows {expected}: {text}"
        );
    }
    let created = text.find("request.created").unwrap();
    let decided = text.find("decision.approve").unwrap();
    assert!(created < decided, "oldest first");
}

#[tokio::test]
async fn audit_pending_lists_only_pending_requests() {
    let t = spawn_slack(Some(POLICY)).await;
    let (approved, pending, _) = history(&t).await;
    let text = shown(&t.audit(CAROL, "pending").await);
    assert!(text.contains(&pending));
    assert!(!text.contains(&approved));
}

#[tokio::test]
async fn audit_of_a_mentioned_or_named_person_shows_what_they_decided() {
    let t = spawn_slack(Some(POLICY)).await;
    let (approved, _, _) = history(&t).await;
    for query in [
        format!("<@{BOB}|bob>"),
        format!("<@{BOB}>"),
        "user:bob@example.com".to_string(),
        "user:<mailto:bob@example.com|bob@example.com>".to_string(),
    ] {
        let text = shown(&t.audit(CAROL, &query).await);
        assert!(text.contains("decision.approve"), "{query}: {text}");
        assert!(text.contains(&approved), "{query}: {text}");
        assert!(text.contains("bob@example.com"), "{query}: {text}");
    }
    // What the agent's requests were, by the agent's principal.
    let text = shown(&t.audit(CAROL, "user:olivia@example.com").await);
    assert!(text.contains("No recorded activity"), "{text}");
    let answer = t.audit(CAROL, &format!("<@{NOMAIL}>")).await;
    assert!(
        answer["text"].as_str().unwrap().contains("not linked"),
        "{answer}"
    );
}

#[tokio::test]
async fn audit_by_action_and_since_filters_requests() {
    let t = spawn_slack(Some(POLICY)).await;
    let (approved, pending, deploy) = history(&t).await;
    let text = shown(&t.audit(CAROL, "action:db.* since:24h").await);
    assert!(text.contains(&approved) && text.contains(&pending));
    assert!(!text.contains(&deploy));
    let text = shown(&t.audit(CAROL, "action:deploy.*").await);
    assert!(text.contains(&deploy) && !text.contains(&approved));
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let text = shown(&t.audit(CAROL, &format!("since:{tomorrow}")).await);
    assert!(text.contains("No requests match"), "{text}");
    let text = shown(&t.audit(CAROL, "since:7d").await);
    assert!(text.contains(&deploy));
}

#[tokio::test]
async fn audit_verify_reports_the_chain_and_its_signatures() {
    let t = spawn_slack(Some(POLICY)).await;
    history(&t).await;
    let text = shown(&t.audit(CAROL, "verify").await);
    assert!(text.contains("intact"), "{text}");
    assert!(text.contains("signatures verified"), "{text}");
}

#[tokio::test]
async fn audit_help_and_nonsense_explain_the_forms() {
    let t = spawn_slack(Some(POLICY)).await;
    let text = shown(&t.audit(CAROL, "help").await);
    for form in ["pending", "verify", "action:", "since:", "user:", "page:"] {
        assert!(text.contains(form), "help mentions {form}: {text}");
    }
    let answer = t.audit(CAROL, "drop all tables").await;
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(
        answer["text"].as_str().unwrap().contains("Usage"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_non_auditor_is_refused_and_an_unmapped_user_is_told_why() {
    let t = spawn_slack(Some(POLICY)).await;
    history(&t).await;
    for query in ["", "pending", "verify", &format!("<@{CAROL}>")] {
        let answer = t.audit(BOB, query).await;
        assert_eq!(answer["response_type"], "ephemeral");
        let text = answer["text"].as_str().unwrap();
        assert!(
            text.contains("not in the policy's auditors group"),
            "{query}: {text}"
        );
        assert!(answer.get("blocks").is_none());
    }
    let answer = t.audit(NOMAIL, "pending").await;
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .contains("cannot tell who you are")
    );
}

#[tokio::test]
async fn audit_can_be_opened_to_everyone() {
    let t = spawn_slack_with(Some(POLICY), |s| s.audit_open_to_all = true).await;
    let (_, pending, _) = history(&t).await;
    let text = shown(&t.audit(BOB, "pending").await);
    assert!(text.contains(&pending));
}

#[tokio::test]
async fn long_answers_are_paged_and_the_next_page_button_shows_the_next_page() {
    let t = spawn_slack(Some(POLICY)).await;
    let agent = t.app.agent().await;
    let mut ids = vec![];
    for _ in 0..12 {
        ids.push(
            t.app.create(&agent, export_request()).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let answer = t.audit(CAROL, "pending").await;
    let first = shown(&answer);
    assert!(first.contains("/audit pending page:2"), "{first}");
    // Newest first: the two oldest are on page 2.
    assert!(first.contains(&ids[11]) && !first.contains(&ids[0]));

    let next = answer["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .find(|e| e["action_id"] == "countersign_audit_page")
        .expect("a next-page button");
    let res = t
        .click(
            CAROL,
            "countersign_audit_page",
            next["value"].as_str().unwrap(),
        )
        .await;
    assert_eq!(res.status(), 200);
    let method = format!("response_url:click-{CAROL}");
    let replies = t.fake.wait_for(&method, 1).await;
    let reply = &replies[0];
    assert_eq!(reply.body["replace_original"], true);
    let second = shown(&reply.body);
    assert!(second.contains(&ids[0]) && second.contains(&ids[1]));
    assert!(!second.contains(&ids[11]));
    assert!(
        reply.authorization.is_none(),
        "the bot token never goes to a response_url"
    );

    let typed = shown(&t.audit(CAROL, "pending page:2").await);
    assert!(typed.contains(&ids[0]) && !typed.contains(&ids[11]));
}

#[tokio::test]
async fn a_slow_answer_is_acknowledged_at_once_and_follows_through_the_response_url() {
    let t = spawn_slack(Some(POLICY)).await;
    history(&t).await;
    // Carol is not looked up yet; make that lookup far outlast Slack's 3 s.
    t.fake.delay("users.info", Duration::from_secs(5));
    let answer = t.audit(CAROL, "pending").await;
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(
        answer["text"].as_str().unwrap().contains("Looking that up"),
        "{answer}"
    );
    let method = format!("response_url:audit-{CAROL}");
    let replies = t.fake.wait_for(&method, 1).await;
    let text = shown(&replies[0].body);
    assert!(text.contains("Pending requests"), "{text}");
}

#[tokio::test]
async fn audit_verify_names_a_row_forged_behind_the_service_and_the_last_checkpoint() {
    if !crate::helpers::sqlite_file_at_hand(
        "audit_verify_names_a_row_forged_behind_the_service_and_the_last_checkpoint",
    ) {
        return;
    }
    let cp = tempfile::tempdir()
        .unwrap()
        .keep()
        .join("checkpoints.jsonl");
    let path = cp.clone();
    let t = spawn_slack_with(Some(POLICY), move |s| s.audit_checkpoints = Some(path)).await;
    let (approved, _, _) = history(&t).await;
    let intact = shown(&t.audit(CAROL, "verify").await);
    assert!(
        intact.contains("Last checkpoint written: event"),
        "{intact}"
    );

    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", t.app.db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE approval_requests SET summary = 'harmless' WHERE id = ?")
        .bind(&approved)
        .execute(&mut conn)
        .await
        .unwrap();
    let text = shown(&t.audit(CAROL, "verify").await);
    assert!(text.contains("BROKEN"), "{text}");
    assert!(
        text.contains(&format!("request {approved}: summary")),
        "{text}"
    );
}
