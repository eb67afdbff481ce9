//! The approval request and the values it is made of.
//!
//! Every value an agent sends is parsed here into a type that cannot hold
//! an invalid value (`Action`, `Risk`, `Verdict`, …). The payload hash binds
//! an approval to exactly what the approver was shown.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::principal::Principal;

/// The lifecycle of a request: `pending` → one of the four final states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "expired" => Status::Expired,
            "cancelled" => Status::Cancelled,
            other => {
                return Err(format!(
                    "status '{other}' is unknown: use pending, approved, denied, expired or cancelled"
                ));
            }
        })
    }

    pub fn is_final(self) -> bool {
        self != Status::Pending
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Risk::Low),
            "medium" => Ok(Risk::Medium),
            "high" => Ok(Risk::High),
            "critical" => Ok(Risk::Critical),
            other => Err(format!(
                "risk '{other}' is unknown: use low, medium, high or critical"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "approve" => Ok(Verdict::Approve),
            "deny" => Ok(Verdict::Deny),
            other => Err(format!("verdict '{other}' is unknown: use approve or deny")),
        }
    }
}

/// What an agent wants to do, like `db.export`. Kept to a small alphabet so
/// policies can glob it and chat surfaces can show it without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action(String);

impl Action {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 128 {
            return Err("action must be 1 to 128 characters, like db.export".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
        {
            return Err(format!(
                "action '{s}' may only use letters, digits and . _ - : /, like db.export"
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A lowercase hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadHash(String);

impl PayloadHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// Parses a human duration like `30m`, `2h` or `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration like 30s, 15m, 2h or 7d ({e})"))
}

/// The longest a request may wait for a human. GitHub fails jobs after 30
/// days; we allow as long, and no longer, so nothing is pending forever.
pub const MAX_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
pub const MIN_EXPIRY: Duration = Duration::from_secs(1);

/// The validated content of a new request: what approvers will be shown.
#[derive(Debug, Clone)]
pub struct RequestContent {
    pub action: Action,
    pub resource: String,
    pub summary: String,
    pub justification: Option<String>,
    pub details: serde_json::Map<String, serde_json::Value>,
    pub risk: Risk,
    pub on_behalf_of: Option<Principal>,
}

impl RequestContent {
    /// The SHA-256 of a canonical JSON of everything approvers are shown.
    /// `serde_json` maps are ordered by key, so the encoding is canonical.
    pub fn payload_hash(&self, requester: &Principal) -> PayloadHash {
        let canonical = serde_json::json!({
            "action": self.action.as_str(),
            "resource": self.resource,
            "summary": self.summary,
            "justification": self.justification,
            "details": self.details,
            "risk": self.risk.as_str(),
            "requester": requester.as_str(),
            "on_behalf_of": self.on_behalf_of.as_ref().map(|p| p.as_str()),
        });
        PayloadHash::of(canonical.to_string().as_bytes())
    }
}

pub fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.chars().count() > max {
        return Err(format!("{field} is longer than {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(format!("{field} contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_is_not_final() {
        assert!(!Status::Pending.is_final());
        for s in [
            Status::Approved,
            Status::Denied,
            Status::Expired,
            Status::Cancelled,
        ] {
            assert!(s.is_final());
        }
    }

    #[test]
    fn actions_are_restricted_to_a_safe_alphabet() {
        assert!(Action::parse("db.export").is_ok());
        assert!(Action::parse("db export").is_err());
        assert!(Action::parse("<!channel>").is_err());
        assert!(Action::parse("").is_err());
    }

    #[test]
    fn the_payload_hash_changes_with_anything_the_approver_sees() {
        let requester = Principal::parse("agent:bot").unwrap();
        let mut c = RequestContent {
            action: Action::parse("db.export").unwrap(),
            resource: "prod/customers".into(),
            summary: "Export".into(),
            justification: None,
            details: Default::default(),
            risk: Risk::High,
            on_behalf_of: None,
        };
        let a = c.payload_hash(&requester);
        c.details.insert("rows".into(), 10.into());
        assert_ne!(a, c.payload_hash(&requester));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_duration("soon").is_err());
    }
}
