//! Making text safe and small enough for Slack.
//!
//! Two separate guarantees, applied at two points:
//!
//! - [`escape`] runs on every string an agent (or anyone but us) supplied,
//!   before it reaches a template, so agent text cannot ping `@channel`,
//!   mention a user or disguise a link: Slack only parses `<…>` sequences,
//!   and after escaping there are none. Built-in templates put such text
//!   only in `plain_text` objects, where nothing formats; the few lines that
//!   must be mrkdwn (mentions, date tokens) take agent text through
//!   [`mrkdwn`], which also defuses `*_~` and backticks.
//! - [`fit`] runs on every rendered block list, whatever the template
//!   (built-in or an operator's override) did, so a message never exceeds
//!   Slack's limits: Slack rejects the whole message otherwise, and an
//!   approval that cannot be posted cannot be given. It also marks every
//!   mrkdwn text `verbatim`, which turns off Slack's automatic parsing of
//!   bare `@here`, `#channel` and URLs.

use serde_json::{Value, json};

use crate::channels::text;

pub const MAX_BLOCKS: usize = 50;
pub const MAX_TEXT: usize = 3000;
pub const MAX_FIELD_TEXT: usize = 2000;
pub const MAX_FIELDS: usize = 10;
pub const MAX_HEADER: usize = 150;
pub const MAX_BUTTON_TEXT: usize = 75;
pub const MAX_ACTION_ID: usize = 255;
pub const MAX_BLOCK_ID: usize = 255;
pub const MAX_VALUE: usize = 2000;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
pub const MAX_ACTION_ELEMENTS: usize = 25;
pub const MAX_PLACEHOLDER: usize = 150;
pub const MAX_LABEL: usize = 2000;
/// The top-level `text` of a message (the notification fallback).
pub const MAX_FALLBACK: usize = 3000;

/// Makes agent text safe for a `plain_text` object (and harmless in
/// mrkdwn): invisible characters spelled out ([`text::visible`]), then the
/// three characters Slack treats as control characters in every text
/// object turned into the entities Slack decodes when it displays text.
/// After this there is no `<…>` sequence, so nothing pings or links.
pub fn escape(s: &str) -> String {
    entities(&text::visible(s, true))
}

fn entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Makes agent text inert inside a `mrkdwn` object, on one line.
///
/// Slack's mrkdwn has no escape character (its formatting guide lists only
/// the `&`, `<`, `>` entities, and a backslash shows as a backslash), so
/// `*bold*`, `_italic_`, `~strike~` and `` `code` `` cannot be escaped, only
/// defused: each marker becomes a look-alike that Slack does not parse
/// (`∗ ˍ ∼ ˋ`), the approach jsx-slack documents for the same problem.
/// Line breaks become ` ⏎ ` (no new line, so no `>` quote or list can
/// start), and a leading `>` becomes `＞`, because Slack renders `&gt;` at
/// the start of a line as a quote too. Use `plain_text` instead wherever
/// Block Kit allows; this is for the lines that must stay mrkdwn (they carry
/// mentions or date tokens).
pub fn mrkdwn(s: &str) -> String {
    let one_line = text::visible(s, false);
    let mut out = String::with_capacity(one_line.len());
    for (i, c) in one_line.chars().enumerate() {
        match c {
            '>' if i == 0 => out.push('＞'),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' => out.push('∗'),
            '_' => out.push('ˍ'),
            '~' => out.push('∼'),
            '`' => out.push('ˋ'),
            c => out.push(c),
        }
    }
    out
}

/// Escapes, then shortens to at most `max` characters.
pub fn escape_clip(s: &str, max: usize) -> String {
    clip(&escape(s), max)
}

/// Shortens to at most `max` characters, ending in `…` when cut, and never
/// inside an `&…;` entity (a cut entity would show as raw text).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = out.rfind('&')
        && !out[amp..].contains(';')
        && out.len() - amp < 8
    {
        out.truncate(amp);
    }
    out.push('…');
    out
}

/// Brings a rendered block list within Slack's limits, in place.
pub fn fit(blocks: &mut Value) {
    let Some(list) = blocks.as_array_mut() else {
        return;
    };
    if list.len() > MAX_BLOCKS {
        let omitted = list.len() - (MAX_BLOCKS - 1);
        list.truncate(MAX_BLOCKS - 1);
        list.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": format!("… {omitted} more blocks not shown (Slack shows at most {MAX_BLOCKS})") }]
        }));
    }
    for block in list.iter_mut() {
        fit_block(block);
    }
}

fn fit_block(block: &mut Value) {
    clip_key(block, "block_id", MAX_BLOCK_ID);
    let kind = block.get("type").and_then(Value::as_str).map(str::to_owned);
    match kind.as_deref() {
        Some("header") => text_object(block.get_mut("text"), MAX_HEADER),
        Some("section") => {
            text_object(block.get_mut("text"), MAX_TEXT);
            if let Some(fields) = block.get_mut("fields").and_then(Value::as_array_mut) {
                fields.truncate(MAX_FIELDS);
                for f in fields {
                    text_object(Some(f), MAX_FIELD_TEXT);
                }
            }
            if let Some(accessory) = block.get_mut("accessory") {
                fit_element(accessory);
            }
        }
        Some("context") => {
            if let Some(elements) = block.get_mut("elements").and_then(Value::as_array_mut) {
                elements.truncate(MAX_CONTEXT_ELEMENTS);
                for e in elements {
                    text_object(Some(e), MAX_TEXT);
                }
            }
        }
        Some("actions") => {
            if let Some(elements) = block.get_mut("elements").and_then(Value::as_array_mut) {
                elements.truncate(MAX_ACTION_ELEMENTS);
                for e in elements {
                    fit_element(e);
                }
            }
        }
        Some("input") => {
            text_object(block.get_mut("label"), MAX_LABEL);
            text_object(block.get_mut("hint"), MAX_LABEL);
            if let Some(element) = block.get_mut("element") {
                fit_element(element);
            }
        }
        _ => {}
    }
}

fn fit_element(element: &mut Value) {
    clip_key(element, "action_id", MAX_ACTION_ID);
    clip_key(element, "value", MAX_VALUE);
    if element.get("type").and_then(Value::as_str) == Some("button") {
        text_object(element.get_mut("text"), MAX_BUTTON_TEXT);
    }
    text_object(element.get_mut("placeholder"), MAX_PLACEHOLDER);
    if let Some(confirm) = element.get_mut("confirm") {
        text_object(confirm.get_mut("title"), 100);
        text_object(confirm.get_mut("text"), 300);
        text_object(confirm.get_mut("confirm"), 30);
        text_object(confirm.get_mut("deny"), 30);
    }
}

/// A text composition object: clip its text; make mrkdwn verbatim.
fn text_object(obj: Option<&mut Value>, max: usize) {
    let Some(obj) = obj else { return };
    clip_key(obj, "text", max);
    if obj.get("type").and_then(Value::as_str) == Some("mrkdwn")
        && let Some(map) = obj.as_object_mut()
    {
        map.insert("verbatim".into(), Value::Bool(true));
    }
}

fn clip_key(obj: &mut Value, key: &str, max: usize) {
    if let Some(Value::String(s)) = obj.get_mut(key)
        && s.chars().count() > max
    {
        *s = clip(s, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_so_nothing_pings_or_links() {
        assert_eq!(
            escape("<!channel> <@U123> <https://evil|click> & co"),
            "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|click&gt; &amp; co"
        );
    }

    #[test]
    fn in_mrkdwn_no_formatting_marker_stays_live_and_nothing_breaks_the_line() {
        let s = mrkdwn("> *APPROVED BY SECURITY*\n~x~ `code` _i_ <!channel>\u{202E}");
        assert_eq!(
            s,
            "＞ ∗APPROVED BY SECURITY∗ ⏎ ∼x∼ ˋcodeˋ ˍiˍ &lt;!channel&gt;[U+202E]"
        );
        for live in ['*', '_', '~', '`', '<', '\n'] {
            assert!(!s.contains(live), "{live:?} is live in {s}");
        }
    }

    #[test]
    fn clipping_respects_the_limit_and_never_cuts_an_entity() {
        let s = clip(&"a".repeat(5000), 3000);
        assert_eq!(s.chars().count(), 3000);
        assert!(s.ends_with('…'));
        let s = escape_clip("abc<def", 6);
        assert_eq!(s, "abc…", "a cut &lt; is dropped whole");
        assert_eq!(clip("short", 10), "short");
    }

    #[test]
    fn fit_enforces_slack_limits_whatever_the_template_did() {
        let long = "x".repeat(5000);
        let mut blocks = Value::Array(
            std::iter::once(json!({"type": "header", "text": {"type": "plain_text", "text": long}}))
                .chain(std::iter::once(json!({"type": "section", "text": {"type": "mrkdwn", "text": long},
                    "fields": (0..12).map(|_| json!({"type": "mrkdwn", "text": long})).collect::<Vec<_>>()})))
                .chain(std::iter::once(json!({"type": "actions", "elements": [
                    {"type": "button", "action_id": long, "value": long, "text": {"type": "plain_text", "text": long}}]})))
                .chain((0..60).map(|_| json!({"type": "divider"})))
                .collect(),
        );
        fit(&mut blocks);
        let list = blocks.as_array().unwrap();
        assert_eq!(list.len(), MAX_BLOCKS);
        let count = |v: &Value| v.as_str().unwrap().chars().count();
        assert_eq!(count(&list[0]["text"]["text"]), MAX_HEADER);
        assert_eq!(count(&list[1]["text"]["text"]), MAX_TEXT);
        assert_eq!(list[1]["text"]["verbatim"], true);
        assert_eq!(list[1]["fields"].as_array().unwrap().len(), MAX_FIELDS);
        assert_eq!(count(&list[1]["fields"][0]["text"]), MAX_FIELD_TEXT);
        let button = &list[2]["elements"][0];
        assert_eq!(count(&button["text"]["text"]), MAX_BUTTON_TEXT);
        assert_eq!(count(&button["action_id"]), MAX_ACTION_ID);
        assert_eq!(count(&button["value"]), MAX_VALUE);
    }
}
