use countersign::channels::teams::card::{Templates, check_adaptive_card, samples};
use serde_json::json;

use crate::bot::*;
use crate::helpers::export_request;

#[tokio::test]
async fn a_request_is_posted_as_an_adaptive_card_with_approve_and_deny() {
    let t = spawn_teams().await;
    let (_, request, post) = t.create_and_post().await;
    assert_eq!(post.conversation(), CONVERSATION);
    assert!(
        post.auth
            .as_deref()
            .unwrap()
            .starts_with("Bearer connector-token-")
    );
    let attachment = &post.body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = post.card();
    check_adaptive_card(card).unwrap();
    assert_eq!(card["version"], "1.5");
    let text = card_text(card);
    let id = request["id"].as_str().unwrap();
    for shown in [
        "high",
        "db.export",
        "prod/customers",
        "deploy-bot",
        "alice@example.com",
        "Auditors asked for it",
        "rows",
        "120000",
        "default",
        request["payload_sha256"].as_str().unwrap(),
        id,
        "Approvals: 0 of 1",
        "Expires",
    ] {
        assert!(text.contains(shown), "the card shows {shown}:\n{text}");
    }
    assert_eq!(verbs(card), ["approve", "deny"]);
    let deny = &card["actions"][1];
    assert_eq!(deny["type"], "Action.ShowCard");
    let reason = &deny["card"]["body"][0];
    assert_eq!(reason["type"], "Input.Text");
    assert_eq!(reason["id"], "reason");
    assert_eq!(reason["isRequired"], true);
    assert_eq!(card["actions"][0]["data"]["request_id"], id);
    assert_eq!(
        card["actions"][0]["data"]["payload_sha256"],
        request["payload_sha256"]
    );
    let kinds = t.app.audit_kinds(id).await;
    assert!(kinds.contains(&"teams.posted".to_string()), "{kinds:?}");
    let posted = t.app.chat_message(id, "teams").await.unwrap();
    assert_eq!(posted.conversation, CONVERSATION);
    assert_eq!(posted.message_id, "activity-1");
    assert_eq!(t.bf.posts().len(), 1, "posted exactly once");
}

#[test]
fn every_template_renders_json_made_only_of_adaptive_card_1_5_elements() {
    let templates = Templates::load(None).unwrap();
    let all = samples();
    for name in ["request.json", "audit.json", "notice.json"] {
        assert!(all.iter().any(|(n, _)| *n == name), "{name} has samples");
    }
    for (name, ctx) in all {
        let card = templates.render(name, &ctx).unwrap();
        check_adaptive_card(&card).unwrap_or_else(|e| panic!("{name}: {e}\n{card:#}"));
    }
    let raw: Vec<&str> = vec![
        include_str!("../../templates/teams/request.json"),
        include_str!("../../templates/teams/audit.json"),
        include_str!("../../templates/teams/notice.json"),
    ];
    assert!(raw.iter().all(|t| t.contains("\"version\": \"1.5\"")));
}

#[tokio::test]
async fn agent_text_is_escaped_and_truncated_on_the_card() {
    let t = spawn_teams().await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["summary"] = json!(format!(
        "Click [here](https://evil.example) <at>General</at> **now** {}",
        "x".repeat(600)
    ));
    body["justification"] = json!("# Urgent\n- trust me");
    body["details"] = json!({ "link": "[docs](https://evil.example)" });
    t.app.create(&agent, body).await;
    let post = t.bf.wait_for_post().await;
    // Agent text reaches the card only in TextRuns, which Teams shows as
    // plain text (it once was backslash-escaped markdown in TextBlocks).
    let markdown = markdown_texts(post.card());
    for live in ["here", "<at>", "now", "Urgent", "docs"] {
        assert!(!markdown.contains(live), "{live} in markdown: {markdown}");
    }
    let runs = text_runs(post.card());
    assert!(
        runs.contains("Click [here](https://evil.example) <at>General</at> **now** x"),
        "{runs}"
    );
    assert!(runs.contains("# Urgent\n- trust me"), "{runs}");
    assert!(runs.contains("[docs](https://evil.example)"), "{runs}");
    assert!(!runs.contains(&"x".repeat(600)), "the summary is truncated");
    assert!(runs.contains("more characters hidden: audit "), "{runs}");
    assert!(post.body.to_string().len() < 28 * 1024);
}

#[tokio::test]
async fn with_a_public_url_the_card_opens_its_request_in_the_console() {
    let t = spawn_teams_with(None, |s| {
        s.public_url = Some("https://countersign.example.com".into())
    })
    .await;
    let (_, request, post) = t.create_and_post().await;
    let card = post.card();
    check_adaptive_card(card).unwrap();
    let open = card["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "Action.OpenUrl")
        .expect("an Open in Countersign action");
    assert_eq!(open["title"], "Open in Countersign");
    assert_eq!(
        open["url"],
        format!(
            "https://countersign.example.com/ui/requests/{}",
            request["id"].as_str().unwrap()
        )
    );
}
