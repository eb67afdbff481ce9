//! `POST /slack/interactions` after its signature check: the form body,
//! the JSON payload, button values and the deny form's context.
#![no_main]

use countersign::channels::slack::interactions::parse_payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As sent: a form body.
    let _ = parse_payload(text);
    // Most of the grammar is in the JSON, which a form body would hide
    // behind percent-encoding: also send the input as the payload itself.
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", text)
        .finish();
    let _ = parse_payload(&body);
});
