//! Agent text reaches Slack as inert text: in plain_text objects (or, in
//! the few mrkdwn lines, defused), with every invisible or reordering
//! character spelled out, cut fields saying what is hidden and how to see
//! it, and every click bound to the payload it was made on.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::support::*;

const POLICY: &str = "groups:\n  auditors: [user:carol@example.com]\nrules: []\n";

const FORMAT_CHARS: [char; 5] = ['\u{202E}', '\u{2028}', '\u{2060}', '\u{061C}', '\u{200B}'];

/// A summary that would fake a field, ping everyone and disguise a link
/// if Slack formatted it, plus characters that hide or reorder text.
fn hostile_summary() -> String {
    format!(
        "*APPROVED BY SECURITY*\n~x~ `code` <!channel> <https://evil|click> rtl{}sep{}wj{}alm{}zw{}end",
        FORMAT_CHARS[0], FORMAT_CHARS[1], FORMAT_CHARS[2], FORMAT_CHARS[3], FORMAT_CHARS[4]
    )
}

/// Every text object under `v`, as (type, text).
fn text_objects(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            if let (Some(kind), Some(text)) = (
                m.get("type").and_then(Value::as_str),
                m.get("text").and_then(Value::as_str),
            ) && (kind == "plain_text" || kind == "mrkdwn")
            {
                out.push((kind.to_string(), text.to_string()));
            }
            m.values().for_each(|v| text_objects(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| text_objects(v, out)),
        _ => {}
    }
}

/// Checks that no agent formatting is live anywhere in `blocks`, and
/// returns the plain_text texts joined.
fn assert_inert(blocks: &Value) -> String {
    let mut objects = vec![];
    text_objects(blocks, &mut objects);
    assert!(!objects.is_empty(), "{blocks:#}");
    for (kind, text) in &objects {
        if kind == "mrkdwn" {
            for live in [
                "*APPROVED",
                "~x~",
                "`code`",
                "<!channel>",
                "<https://evil",
                "APPROVED",
            ] {
                assert!(!text.contains(live), "{live} is live in mrkdwn: {text}");
            }
        }
        assert!(!text.contains("<!channel>") && !text.contains("<https://evil"));
    }
    let json = blocks.to_string();
    for c in FORMAT_CHARS {
        assert!(!json.contains(c), "U+{:04X} reached Slack", c as u32);
    }
    objects
        .into_iter()
        .filter(|(k, _)| k == "plain_text")
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn agent_text_reaches_slack_only_in_plain_text_with_format_characters_spelled_out() {
    let t = spawn_slack(Some(POLICY)).await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["summary"] = json!(hostile_summary());
    body["justification"] = json!("> *quoted* _by_ security\n`rm -rf`");
    body["details"] = json!({ "*key*": "~value~ <!here>" });
    let (_, post) = t.create_posted(&agent, body).await;

    let plain = assert_inert(&post.body["blocks"]);
    // The text is all there, as text: what the approver sees is what the
    // agent wrote, with nothing formatted and nothing hidden.
    assert!(
        plain.contains(
            "*APPROVED BY SECURITY*\n~x~ `code` &lt;!channel&gt; &lt;https://evil|click&gt;"
        ),
        "{plain}"
    );
    assert!(
        plain.contains("rtl[U+202E]sep[U+2028]wj[U+2060]alm[U+061C]zw[U+200B]end"),
        "{plain}"
    );
    assert!(
        plain.contains("&gt; *quoted* _by_ security\n`rm -rf`"),
        "{plain}"
    );
    assert!(plain.contains("*key*:\n~value~ &lt;!here&gt;"), "{plain}");
    let fallback = post.body["text"].as_str().unwrap();
    assert!(
        !fallback.contains('<') && !fallback.contains('*'),
        "{fallback}"
    );

    // The deny form shows the same text the same way.
    t.click(
        BOB,
        "countersign_deny",
        &button(&post, "countersign_deny").unwrap(),
    )
    .await;
    let opened = t.fake.wait_for("views.open", 1).await;
    let plain = assert_inert(&opened[0].body["view"]["blocks"]);
    assert!(plain.contains("*APPROVED BY SECURITY*"), "{plain}");
}

#[tokio::test]
async fn a_long_justification_is_cut_with_the_hidden_count_and_audit_shows_it_all() {
    let t = spawn_slack(Some(POLICY)).await;
    let agent = t.app.agent().await;
    let mut body = export_request();
    body["summary"] = json!("s".repeat(1000));
    body["justification"] = json!(format!("{}END", "j".repeat(3997)));
    let (id, post) = t.create_posted(&agent, body).await;

    let plain = assert_inert(&post.body["blocks"]);
    assert!(
        plain.contains(&format!(
            "{}… (500 more characters hidden: /audit {id} shows all)",
            "s".repeat(500)
        )),
        "{plain}"
    );
    assert!(
        plain.contains(&format!(
            "… (3,000 more characters hidden: /audit {id} shows all)"
        )),
        "{plain}"
    );
    assert!(!plain.contains("END"));

    // `/audit <id>` shows every character, split over sections if need be.
    let answer = t.audit(CAROL, &id).await;
    let mut objects = vec![];
    text_objects(&answer["blocks"], &mut objects);
    let all: String = objects.into_iter().map(|(_, t)| t).collect();
    assert!(all.contains(&"s".repeat(1000)), "the whole summary");
    assert!(
        all.contains(&format!("{}END", "j".repeat(3997))),
        "the whole justification"
    );
}

#[tokio::test]
async fn a_click_whose_button_carries_no_payload_hash_is_refused_and_audited() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;
    for unbound in [
        json!({ "request_id": id }),
        json!({ "request_id": id, "payload_sha256": "" }),
    ] {
        t.click(BOB, "countersign_approve", &unbound.to_string())
            .await;
    }
    eventually("both refusals to be audited", || async {
        t.count_kind(&id, "decision.blocked").await == 2
    })
    .await;
    let told = t.ephemeral_to(BOB).await;
    assert!(told.contains("did not say which version"), "{told}");
    assert_eq!(t.decisions(&id).await, 0);
    assert_eq!(t.status(&id).await, "pending");

    // Deny without a hash never opens the form.
    t.click(
        BOB,
        "countersign_deny",
        &json!({ "request_id": id }).to_string(),
    )
    .await;
    eventually("the deny refusal to be audited", || async {
        t.count_kind(&id, "decision.blocked").await == 3
    })
    .await;
    assert!(t.fake.calls("views.open").is_empty());
}

#[tokio::test]
async fn an_interaction_payload_with_a_key_twice_is_refused_400_and_changes_nothing() {
    let t = spawn_slack(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let click = t
        .block_actions(
            CAROL,
            "countersign_approve",
            &button(&post, "countersign_approve").unwrap(),
        )
        .to_string();
    // Two spellings of one click: the user twice, or the actions twice.
    let twice_user = click.replacen(
        "\"id\":\"U0CAROL\"",
        "\"id\":\"U0BOB\",\"id\":\"U0CAROL\"",
        1,
    );
    let twice_actions = click.replacen("\"actions\":", "\"actions\":[],\"actions\":", 1);
    for raw in [twice_user, twice_actions] {
        assert_ne!(raw, click, "the duplicate was spliced in");
        let res = t
            .signed("/slack/interactions", form(&[("payload", &raw)]))
            .await;
        assert_eq!(res.status(), 400);
        let problem: Value = res.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("duplicate key"),
            "{problem}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(t.decisions(&id).await, 0);
    assert_eq!(t.count_kind(&id, "decision.blocked").await, 0);
    assert_eq!(t.status(&id).await, "pending");
}
