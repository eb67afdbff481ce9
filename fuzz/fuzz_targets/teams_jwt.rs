//! The `Authorization` header of `POST /teams/messages`: the bearer token
//! and its JWT header, read before any signing key is looked up.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign::channels::teams::auth::parse_bearer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // The header as sent.
        if let Ok(h) = std::str::from_utf8(rest) {
            let _ = parse_bearer(Some(h));
        }
    } else {
        // The input as the JWT header's JSON, so the fuzzer need not find
        // base64 on its own.
        let h = format!(
            "Bearer {}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(rest),
            URL_SAFE_NO_PAD.encode(b"{\"iss\":\"x\"}")
        );
        if let Ok((_, kid)) = parse_bearer(Some(&h)) {
            let _ = kid;
        }
    }
});
