//! Agent text reaches Teams as inert text: in TextRuns (plain text), with
//! every invisible or reordering character spelled out, cut fields saying
//! what is hidden and how to see it, and every click bound to the card it
//! was made on.

use serde_json::json;

use crate::bot::*;
use crate::helpers::export_request;

const AUDITORS: &str = "
groups:
  auditors: [user:carol@example.com]
rules: []
";

const FORMAT_CHARS: [char; 5] = ['\u{202E}', '\u{2028}', '\u{2060}', '\u{061C}', '\u{200B}'];

fn hostile_summary() -> String {
    format!(
        "*APPROVED BY SECURITY*\n~x~ `code` <at>General</at> [click](https://evil) rtl{}sep{}wj{}alm{}zw{}end",
        FORMAT_CHARS[0], FORMAT_CHARS[1], FORMAT_CHARS[2], FORMAT_CHARS[3], FORMAT_CHARS[4]
    )
}

#[tokio::test]
async fn agent_text_reaches_teams_only_in_text_runs_with_format_characters_spelled_out() {
    let t = spawn_teams().await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["summary"] = json!(hostile_summary());
    body["justification"] = json!("# Security says\n- **approve** now");
    body["details"] = json!({ "**key**": "_value_ [x](https://evil)" });
    t.app.create(&agent, body).await;
    let post = t.bf.wait_for_post().await;
    let card = post.card();

    let markdown = markdown_texts(card);
    for live in [
        "APPROVED",
        "~x~",
        "`code`",
        "<at>",
        "[click]",
        "Security says",
        "**approve**",
        "**key**",
        "_value_",
        "[x]",
    ] {
        assert!(
            !markdown.contains(live),
            "{live} where Teams renders markdown: {markdown}"
        );
    }
    let runs = text_runs(card);
    assert!(
        runs.contains("*APPROVED BY SECURITY*\n~x~ `code` <at>General</at> [click](https://evil) rtl[U+202E]sep[U+2028]wj[U+2060]alm[U+061C]zw[U+200B]end"),
        "{runs}"
    );
    assert!(
        runs.contains("# Security says\n- **approve** now"),
        "{runs}"
    );
    assert!(runs.contains("**key**: "), "{runs}");
    assert!(runs.contains("_value_ [x](https://evil)"), "{runs}");
    let json = post.body.to_string();
    for c in FORMAT_CHARS {
        assert!(!json.contains(c), "U+{:04X} reached Teams", c as u32);
    }
}

#[tokio::test]
async fn a_long_justification_is_cut_with_the_hidden_count_and_audit_shows_it_all() {
    let t = spawn_teams_with_policy(AUDITORS).await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["summary"] = json!("s".repeat(1000));
    body["justification"] = json!(format!("{}END", "j".repeat(3997)));
    let request = t.app.create(&agent, body).await;
    let id = request["id"].as_str().unwrap();
    let post = t.bf.wait_for_post().await;
    let runs = text_runs(post.card());
    assert!(
        runs.contains(&format!(
            "{}… (500 more characters hidden: audit {id} shows all)",
            "s".repeat(500)
        )),
        "{runs}"
    );
    assert!(
        runs.contains(&format!(
            "… (3,000 more characters hidden: audit {id} shows all)"
        )),
        "{runs}"
    );
    assert!(!runs.contains("END"));

    t.wait_until_posted(id).await;
    let before = t.bf.replies().len();
    let res = t
        .send(&t.message_activity("carol", &format!("audit {id}"), &[]))
        .await;
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
    let runs = text_runs(reply.card());
    assert!(runs.contains(&"s".repeat(1000)), "the whole summary");
    assert!(
        runs.contains(&format!("{}END", "j".repeat(3997))),
        "the whole justification"
    );
}

#[tokio::test]
async fn a_teams_click_without_a_payload_hash_is_refused_and_audited() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    for (verb, reason, hash) in [
        ("approve", None, None),
        ("deny", Some("no"), Some(json!(""))),
    ] {
        let mut click = t.click_activity("bob", verb, &request, reason);
        let data = &mut click["value"]["action"]["data"];
        match hash {
            None => {
                data.as_object_mut().unwrap().remove("payload_sha256");
            }
            Some(h) => data["payload_sha256"] = h,
        }
        let res = t.send(&click).await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        let text = card_text(&body["value"]);
        assert!(text.contains("did not say which version"), "{text}");
    }
    assert_eq!(t.app.count("decisions").await, 0);
    let status = t.app.status_of(&agent, id).await;
    assert_eq!(status, "pending");
    let blocked = t
        .app
        .audit_kinds(id)
        .await
        .iter()
        .filter(|k| *k == "decision.blocked")
        .count();
    assert_eq!(blocked, 2);
}

#[tokio::test]
async fn an_activity_with_a_key_twice_is_refused_400_and_changes_nothing() {
    let t = spawn_teams().await;
    let (agent, request, _) = t.create_and_post().await;
    let id = request["id"].as_str().unwrap();
    let click = t
        .click_activity("bob", "approve", &request, None)
        .to_string();
    let hash = request["payload_sha256"].as_str().unwrap();
    // The card's hash twice (a reader of the bytes sees the first), or the
    // verb twice.
    let twice_hash = click.replacen(
        &format!("\"payload_sha256\":\"{hash}\""),
        &format!(
            "\"payload_sha256\":\"{}\",\"payload_sha256\":\"{hash}\"",
            "0".repeat(64)
        ),
        1,
    );
    let twice_verb = click.replacen(
        "\"verb\":\"approve\"",
        "\"verb\":\"deny\",\"verb\":\"approve\"",
        1,
    );
    let before = t.footprint().await;
    for raw in [twice_hash, twice_verb] {
        assert_ne!(raw, click, "the duplicate was spliced in");
        let res = t
            .app
            .client
            .post(t.app.url("/teams/messages"))
            .header("authorization", format!("Bearer {}", t.token()))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let problem: serde_json::Value = res.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("duplicate key"),
            "{problem}"
        );
    }
    assert_eq!(t.footprint().await, before);
    assert_eq!(t.app.status_of(&agent, id).await, "pending");
}
