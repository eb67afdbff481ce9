//! The webhook signature header (`X-Countersign-Signature: v1=<hex>`), as
//! `webhook::verify` reads it for receivers and tests.
#![no_main]

use countersign::webhook::{sign, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (ts, rest) = data.split_at(8);
    let ts = i64::from_le_bytes(ts.try_into().expect("8 bytes"));
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = rest.splitn(3, '\n');
    let (secret, header, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").as_bytes(),
    );
    let expected = sign(secret, ts, body);
    // Sign then verify: a signature verifies for its own inputs.
    assert!(verify(secret, ts, body, &expected));
    // And only a header that spells that signature (hex in any case).
    if verify(secret, ts, body, header) {
        assert!(
            header.eq_ignore_ascii_case(&expected),
            "{header:?} verified"
        );
    }
});
