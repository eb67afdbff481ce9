//! The policy file: YAML into rules, globs, groups and durations.
#![no_main]

use countersign::domain::Risk;
use countersign::domain::policy::{DEFAULT_RULE, Effect, Policy};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const PROBES: &[(&str, &str)] = &[
    ("db.export", "prod/customers"),
    ("", ""),
    ("zz.no-rule-names-this", "nowhere/at/all"),
    ("a", "a/b/c"),
];

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(source, "fuzz") else {
        return;
    };
    for (action, resource) in PROBES {
        for risk in [Risk::Low, Risk::Medium, Risk::High, Risk::Critical] {
            let e = policy.evaluate(action, resource, risk);
            assert_eq!(e.version, hex::encode(Sha256::digest(source.as_bytes())));
            // Fail closed: what no rule matches is never allowed.
            if e.rule == DEFAULT_RULE {
                assert!(*e.effect != Effect::Allow, "the default allowed");
            }
            if let Effect::RequireApproval(spec) = e.effect {
                assert!((1..=20).contains(&spec.approvals));
                assert!(spec.approvers.iter().all(|p| p.is_human()));
                assert!(
                    spec.approvers.is_empty() || spec.approvers.len() >= spec.approvals as usize
                );
            }
        }
    }
    let _ = policy.auditors();
});
