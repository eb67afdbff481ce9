//! Signed webhooks to the agent's `callback_url` when a request reaches a
//! final state.
//!
//! The body is the request's JSON exactly as queued. Headers:
//! `X-Countersign-Timestamp: <unix seconds>` and
//! `X-Countersign-Signature: v1=<hex HMAC-SHA256(secret, "v1:<timestamp>:<body>")>`.
//! Receivers recompute the HMAC, compare in constant time and reject
//! timestamps more than five minutes old.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::config::Secret;
use crate::outbox::{Deliverer, Delivery, OutboxItem};

pub const KIND: &str = "webhook";

pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header in constant time; for receivers and tests.
pub fn verify(secret: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("v1=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

pub struct WebhookDeliverer {
    pub client: reqwest::Client,
    pub secret: Secret,
}

#[async_trait::async_trait]
impl Deliverer for WebhookDeliverer {
    async fn deliver(&self, item: &OutboxItem) -> Delivery {
        let payload = item.payload_json();
        let Some(url) = payload
            .get("url")
            .and_then(|u| u.as_str())
            .map(str::to_string)
        else {
            return Delivery::Failed {
                error: "webhook row has no url".into(),
                audit: None,
            };
        };
        let body = payload
            .get("body")
            .map(|b| b.to_string())
            .unwrap_or_default();
        let ts = chrono::Utc::now().timestamp();
        let attempt = item.attempts + 1;
        let sent = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-countersign-timestamp", ts.to_string())
            .header(
                "x-countersign-signature",
                sign(self.secret.expose(), ts, body.as_bytes()),
            )
            .header("x-countersign-delivery", item.id.to_string())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => Delivery::Delivered {
                audit: Some((
                    "webhook.delivered".into(),
                    json!({ "url": url, "status": res.status().as_u16(), "attempt": attempt }),
                )),
                message: None,
            },
            Ok(res) => {
                let status = res.status().as_u16();
                let error = format!("receiver answered {status}");
                Delivery::Retry {
                    after: crate::outbox::retry_after(res.headers()),
                    audit: Some((
                        "webhook.failed".into(),
                        json!({ "url": url, "status": status, "attempt": attempt, "error": error }),
                    )),
                    error,
                }
            }
            Err(e) => {
                let error = format!("request failed: {}", crate::outbox::transport_error(&e));
                Delivery::Retry {
                    after: None,
                    audit: Some((
                        "webhook.failed".into(),
                        json!({ "url": url, "attempt": attempt, "error": error }),
                    )),
                    error,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_timestamp_and_secret() {
        let sig = sign("s3cret", 1700000000, b"{}");
        assert!(verify("s3cret", 1700000000, b"{}", &sig));
        assert!(!verify("s3cret", 1700000001, b"{}", &sig));
        assert!(!verify("other", 1700000000, b"{}", &sig));
        assert!(!verify("s3cret", 1700000000, b"{ }", &sig));
    }
}
