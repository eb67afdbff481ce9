//! `POST /slack/commands` after its signature check: the form fields,
//! Slack's e-mail links, the `/audit` grammar, and the "next page" button.
#![no_main]

use chrono::{DateTime, Utc};
use countersign::channels::slack::commands::{parse_command, parse_page_button};
use libfuzzer_sys::fuzz_target;

fn form(text: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("team_id", "T1")
        .append_pair("user_id", "U1")
        .append_pair("text", text)
        .finish()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).expect("a valid time");
    let _ = parse_command(text, now);
    let _ = parse_page_button(text);
    // The input as the command's text, and the parse-print-parse of the
    // "next page" button: page 2 of an answer must answer the same query.
    let Ok((Ok(first), query)) = parse_command(&form(text), now) else {
        return;
    };
    let value = serde_json::json!({ "q": query, "p": first.page }).to_string();
    let (q, p) = parse_page_button(&value).expect("our own button value parses");
    let (again, _) =
        parse_command(&form(&format!("{q} page:{p}")), now).expect("the fields are there");
    assert_eq!(
        again.as_ref(),
        Ok(&first),
        "next page of {text:?} is another query"
    );
});
