//! Socket Mode's wire format: the frames Slack sends over the WebSocket
//! and the acknowledgement each envelope needs.
//!
//! Frames are read strictly ([`crate::json`]), like the HTTP bodies: a key
//! twice anywhere is refused. An envelope that cannot be read is still
//! acknowledged when its id can be found, because it would never read
//! better on Slack's retry.

use serde_json::{Value, json};

/// One text frame from Slack.
#[derive(Debug)]
pub enum Frame {
    /// The connection is ready (sent once, first).
    Hello,
    /// Slack will close this connection (`refresh_requested`,
    /// `warning`, `link_disabled`, …): open another one.
    Disconnect {
        reason: String,
    },
    Envelope(Envelope),
    /// Not readable; acknowledged (if it has an id) and dropped.
    Unreadable {
        envelope_id: Option<String>,
        why: String,
    },
    /// A frame type this service does not use.
    Other,
}

/// Something Slack delivers and wants acknowledged within 3 seconds.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: String,
    /// `interactive`, `slash_commands`, `events_api`.
    pub kind: String,
    pub payload: Value,
    /// Whether the acknowledgement may carry an answer (slash commands,
    /// view submissions).
    pub accepts_response_payload: bool,
    /// 0 for a first delivery; Slack counts its retries.
    pub retry_attempt: u64,
}

/// Reads one text frame.
pub fn read(text: &str) -> Frame {
    let value = match crate::json::parse_strict(text.as_bytes()) {
        Ok(v) => v,
        Err(e) => {
            // Only to find the id to acknowledge; nothing else is read.
            let envelope_id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v["envelope_id"].as_str().map(str::to_string));
            return Frame::Unreadable {
                envelope_id,
                why: e.to_string(),
            };
        }
    };
    let kind = value["type"].as_str().unwrap_or_default().to_string();
    match kind.as_str() {
        "hello" => Frame::Hello,
        "disconnect" => Frame::Disconnect {
            reason: value["reason"].as_str().unwrap_or("unknown").to_string(),
        },
        _ => match value["envelope_id"].as_str().filter(|id| !id.is_empty()) {
            None => Frame::Other,
            Some(id) if !value["payload"].is_object() => Frame::Unreadable {
                envelope_id: Some(id.to_string()),
                why: format!("the {kind} envelope has no payload object"),
            },
            Some(id) => Frame::Envelope(Envelope {
                id: id.to_string(),
                accepts_response_payload: value["accepts_response_payload"] == true,
                retry_attempt: value["retry_attempt"].as_u64().unwrap_or(0),
                payload: value["payload"].clone(),
                kind,
            }),
        },
    }
}

/// The acknowledgement of `envelope_id`, with `payload` when the envelope
/// accepts an answer and there is one.
pub fn ack(envelope_id: &str, payload: Option<Value>) -> String {
    match payload {
        Some(p) => json!({ "envelope_id": envelope_id, "payload": p }),
        None => json!({ "envelope_id": envelope_id }),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interactive_envelope_is_read_with_its_id_and_payload() {
        let f = read(
            r#"{"envelope_id":"e1","type":"interactive","accepts_response_payload":false,"retry_attempt":2,"payload":{"type":"block_actions"}}"#,
        );
        let Frame::Envelope(e) = f else {
            panic!("{f:?}")
        };
        assert_eq!(
            (e.id.as_str(), e.kind.as_str(), e.retry_attempt),
            ("e1", "interactive", 2)
        );
        assert_eq!(e.payload["type"], "block_actions");
        assert!(!e.accepts_response_payload);
    }

    #[test]
    fn hello_and_disconnect_are_told_apart() {
        assert!(matches!(
            read(r#"{"type":"hello","num_connections":1}"#),
            Frame::Hello
        ));
        let Frame::Disconnect { reason } =
            read(r#"{"type":"disconnect","reason":"refresh_requested"}"#)
        else {
            panic!("a disconnect")
        };
        assert_eq!(reason, "refresh_requested");
    }

    #[test]
    fn an_envelope_with_a_key_twice_is_acknowledged_but_not_read() {
        let f = read(
            r#"{"envelope_id":"e2","type":"interactive","payload":{"type":"block_actions","type":"view_submission"}}"#,
        );
        let Frame::Unreadable { envelope_id, .. } = f else {
            panic!("{f:?}")
        };
        assert_eq!(envelope_id.as_deref(), Some("e2"));
    }

    #[test]
    fn an_acknowledgement_names_the_envelope_and_carries_an_answer_only_when_given() {
        assert_eq!(ack("e3", None), r#"{"envelope_id":"e3"}"#);
        let with: Value = serde_json::from_str(&ack("e3", Some(json!({"text":"hi"})))).unwrap();
        assert_eq!(with["payload"]["text"], "hi");
    }
}
