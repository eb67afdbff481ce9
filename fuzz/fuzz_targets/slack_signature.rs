//! Slack's request signature headers (`X-Slack-Signature`,
//! `X-Slack-Request-Timestamp`), checked with the verifier
//! `Slack::verify` delegates to. Half the inputs are signed correctly so
//! the timestamp check behind the signature is reached too.
#![no_main]

use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

const SECRET: &str = "fuzz-signing-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = rest.splitn(3, '\n');
    let (ts, sig, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    // Known, upstream: slack-morphism's freshness check computes
    // `(now - ts).abs()`, which overflows for a signed timestamp near
    // i64::MIN (docs/FUZZING.md). Skipped so the fuzzer looks elsewhere.
    if mode & 1 == 1 && ts.trim_start().starts_with('-') {
        return;
    }
    let sig = if mode & 1 == 1 {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
        mac.update(format!("v0:{ts}:{body}").as_bytes());
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    } else {
        sig.to_string()
    };
    let verifier = SlackEventSignatureVerifier::new(&SECRET.to_string().into());
    let _ = verifier.verify(&sig, body, ts);
});
