//! Signed webhooks to the agent's `callback_url` when a request reaches a
//! final state.
//!
//! The body is the request's JSON exactly as queued. Headers:
//! `X-Countersign-Timestamp: <unix seconds>` and
//! `X-Countersign-Signature: v1=<hex HMAC-SHA256(secret, "v1:<timestamp>:<body>")>`.
//! Receivers recompute the HMAC, compare in constant time and reject
//! timestamps more than five minutes old.
//!
//! The destination is judged again at every attempt ([`crate::net::egress`]):
//! the URL against the allowlist in force, and each address the name
//! resolves to by the client's vetting resolver. Redirects are not
//! followed. An answer that will not change by retrying (a refused
//! destination, a 3xx, a 4xx other than 408 and 429) gives the delivery up
//! at once, audited; 408, 429, 5xx and transport errors are retried.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::config::Secret;
use crate::net::egress::Destinations;
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
    /// Built by [`crate::net::egress::webhook_client`]: vetted DNS, no redirects.
    pub client: reqwest::Client,
    pub secret: Secret,
    pub destinations: Destinations,
}

/// Whether a receiver's non-2xx answer is worth another attempt: 408
/// (timeout), 429 (slow down) and 5xx are; a redirect (never followed) or
/// another 4xx (wrong URL, gone, refused) will be answered the same way
/// for as long as we retry.
fn worth_retrying(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
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
        let attempt = item.attempts + 1;
        let shown = crate::net::egress::redact(&url);
        if let Err(why) = self.destinations.judge(&url) {
            let error = format!("destination refused: {why}");
            return Delivery::Failed {
                audit: Some((
                    "webhook.failed".into(),
                    json!({ "url": shown, "attempt": attempt, "error": error }),
                )),
                error,
            };
        }
        let url = shown;
        let body = payload
            .get("body")
            .map(|b| b.to_string())
            .unwrap_or_default();
        let ts = chrono::Utc::now().timestamp();
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
            Ok(res) if !worth_retrying(res.status()) => {
                let status = res.status().as_u16();
                let error = if res.status().is_redirection() {
                    format!("receiver answered {status}; redirects are not followed")
                } else {
                    format!("receiver answered {status}")
                };
                Delivery::Failed {
                    audit: Some((
                        "webhook.failed".into(),
                        json!({ "url": url, "status": status, "attempt": attempt, "error": error }),
                    )),
                    error,
                }
            }
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
            Err(e) if crate::net::egress::forbidden_in(&e).is_some() => {
                let why = crate::net::egress::forbidden_in(&e).map(ToString::to_string);
                let error = format!("destination refused: {}", why.unwrap_or_default());
                Delivery::Failed {
                    audit: Some((
                        "webhook.failed".into(),
                        json!({ "url": url, "attempt": attempt, "error": error }),
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
    fn only_answers_that_may_change_are_retried() {
        for code in [408, 429, 500, 502, 503] {
            assert!(
                worth_retrying(reqwest::StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [301, 307, 400, 401, 403, 404, 410, 422] {
            assert!(
                !worth_retrying(reqwest::StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn a_signature_verifies_only_for_its_body_timestamp_and_secret() {
        let sig = sign("s3cret", 1700000000, b"{}");
        assert!(verify("s3cret", 1700000000, b"{}", &sig));
        assert!(!verify("s3cret", 1700000001, b"{}", &sig));
        assert!(!verify("other", 1700000000, b"{}", &sig));
        assert!(!verify("s3cret", 1700000000, b"{ }", &sig));
    }
}
