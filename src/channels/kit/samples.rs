//! Sample data every platform's template self-check shares.

use crate::service::audit_query::VerifyResult;

/// A verification answer that passed (`ok`) or failed with `reason`
/// (hostile markup of the platform's, to prove it stays inert).
pub fn verify_result(ok: bool, reason: &str) -> VerifyResult {
    VerifyResult {
        ok,
        events: 10,
        signatures: 3,
        head_seq: 10,
        head_hash: "ab".repeat(32),
        first_bad_seq: (!ok).then_some(4),
        reason: (!ok).then(|| reason.into()),
        public_key: "cd".repeat(32),
        mismatches: vec![],
        checkpoint: None,
        checkpoint_sink: None,
    }
}
