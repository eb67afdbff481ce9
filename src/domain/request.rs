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
/// policies can glob it and chat surfaces can show it without escaping,
/// and to one spelling, so `db..export` or `.db.export` cannot slip past a
/// rule written for `db.export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action(String);

impl Action {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 128 {
            return Err("action must be 1 to 128 characters, like db.export".into());
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
            return Err(format!(
                "action contains {} ({}): actions are ASCII, like db.export",
                describe_char(c),
                char_kind(c).unwrap_or("not ASCII")
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
        {
            return Err(format!(
                "action '{s}' may only use letters, digits and . _ - : /, like db.export"
            ));
        }
        // `.`, `:` and `/` separate the parts of an action; each part must
        // have a name, so there is one spelling per action.
        let separators: &[char] = &['.', ':', '/'];
        if s.starts_with(separators) || s.ends_with(separators) {
            return Err(format!(
                "action '{s}' starts or ends with a separator (. : /); write it like db.export"
            ));
        }
        if s.split(separators).any(str::is_empty) {
            return Err(format!(
                "action '{s}' has an empty part (two separators in a row); write it like db.export"
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an action acts on, like `prod/customers`, in its one canonical
/// spelling: the spelling policy globs match and approvers read.
///
/// A resource is `/`-separated segments. Refused, each with its own
/// message: a leading or trailing `/` or whitespace; an empty, `.` or `..`
/// segment; a segment with whitespace at either end; `\`; percent-encoded
/// dots or backslashes (`%2e`, `%5c`); control, format
/// (Unicode Cf: zero-width, bidi) and line or paragraph separator
/// characters; and text not in Unicode NFC. Nothing is normalised
/// silently: a spelling that needs fixing is the agent's to fix, so the
/// resource recorded is the resource that was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource(String);

/// The longest resource, in characters.
pub const MAX_RESOURCE_CHARS: usize = 512;

impl Resource {
    pub fn parse(s: &str) -> Result<Self, String> {
        check_canonical_path("resource", s)?;
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical-path check shared by resources and resource globs in
/// policy files (`what` names the thing in messages).
pub(crate) fn check_canonical_path(what: &str, s: &str) -> Result<(), String> {
    use unicode_normalization::{IsNormalized, is_nfc_quick};
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.chars().count() > MAX_RESOURCE_CHARS {
        return Err(format!(
            "{what} is longer than {MAX_RESOURCE_CHARS} characters"
        ));
    }
    // Characters first: an invisible one is the most misleading problem,
    // so it is the one named.
    if let Some((c, kind)) = s.chars().find_map(|c| char_kind(c).map(|k| (c, k))) {
        return Err(format!("{what} contains {} ({kind})", describe_char(c)));
    }
    if s.starts_with(char::is_whitespace) {
        return Err(format!("{what} starts with whitespace"));
    }
    if s.ends_with(char::is_whitespace) {
        return Err(format!("{what} ends with whitespace"));
    }
    if s.starts_with('/') {
        return Err(format!(
            "{what} starts with '/': write it without, like prod/customers"
        ));
    }
    if s.ends_with('/') {
        return Err(format!(
            "{what} ends with '/': write it without, like prod/customers"
        ));
    }
    if s.contains('\\') {
        return Err(format!(
            "{what} contains '\\': segments are separated by '/' only"
        ));
    }
    let lower = s.to_ascii_lowercase();
    // `%2F` stays allowed: it is three characters, never a separator, so
    // `prod%2Fcustomers` is one segment that no `prod/**` rule meets (and a
    // permit carries it as written). The Claude Code hook relies on it to
    // keep a shell command, slashes and all, in one segment.
    for (code, name) in [("%2e", "a dot"), ("%5c", "a backslash")] {
        if lower.contains(code) {
            return Err(format!(
                "{what} contains '{code}' (a percent-encoded {}): write the character itself",
                &name[2..]
            ));
        }
    }
    for segment in s.split('/') {
        match segment {
            "" => return Err(format!("{what} has an empty segment ('//')")),
            "." => return Err(format!("{what} has a '.' segment")),
            ".." => return Err(format!("{what} has a '..' segment")),
            seg if seg.starts_with(char::is_whitespace) || seg.ends_with(char::is_whitespace) => {
                return Err(format!(
                    "{what} has a segment with whitespace at its start or end ('{seg}')"
                ));
            }
            _ => {}
        }
    }
    let nfc = match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => true,
        _ => unicode_normalization::is_nfc(s),
    };
    if !nfc {
        use unicode_normalization::UnicodeNormalization;
        let normal: String = s.nfc().collect();
        return Err(format!(
            "{what} is not in Unicode NFC form; write it as '{normal}'"
        ));
    }
    Ok(())
}

/// Why a character may not appear in a canonical name, if it may not:
/// it is invisible or reorders the text around it.
fn char_kind(c: char) -> Option<&'static str> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    match c.general_category() {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("a format character"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line separator")
        }
        _ => None,
    }
}

/// `U+200B ZERO WIDTH SPACE`: the code point, and the name of the ones an
/// attacker reaches for (a full name table is not worth its size here).
fn describe_char(c: char) -> String {
    let name = match c {
        '\u{0}' => " NULL",
        '\t' => " CHARACTER TABULATION",
        '\n' => " LINE FEED",
        '\r' => " CARRIAGE RETURN",
        '\u{7f}' => " DELETE",
        '\u{ad}' => " SOFT HYPHEN",
        '\u{61c}' => " ARABIC LETTER MARK",
        '\u{180e}' => " MONGOLIAN VOWEL SEPARATOR",
        '\u{200b}' => " ZERO WIDTH SPACE",
        '\u{200c}' => " ZERO WIDTH NON-JOINER",
        '\u{200d}' => " ZERO WIDTH JOINER",
        '\u{200e}' => " LEFT-TO-RIGHT MARK",
        '\u{200f}' => " RIGHT-TO-LEFT MARK",
        '\u{2028}' => " LINE SEPARATOR",
        '\u{2029}' => " PARAGRAPH SEPARATOR",
        '\u{202a}' => " LEFT-TO-RIGHT EMBEDDING",
        '\u{202b}' => " RIGHT-TO-LEFT EMBEDDING",
        '\u{202c}' => " POP DIRECTIONAL FORMATTING",
        '\u{202d}' => " LEFT-TO-RIGHT OVERRIDE",
        '\u{202e}' => " RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => " WORD JOINER",
        '\u{2066}' => " LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => " RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => " FIRST STRONG ISOLATE",
        '\u{2069}' => " POP DIRECTIONAL ISOLATE",
        '\u{feff}' => " ZERO WIDTH NO-BREAK SPACE",
        _ => "",
    };
    format!("U+{:04X}{name}", c as u32)
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
    fn actions_have_one_spelling() {
        for bad in [
            "db..export",
            ".db.export",
            "db.export.",
            "db/export/",
            "db:.x",
            "db.\u{200b}export",
        ] {
            assert!(Action::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Action::parse("db.export").is_ok());
        assert!(Action::parse("k8s:apply/deployment").is_ok());
        assert!(
            Action::parse("db.\u{200b}export")
                .unwrap_err()
                .contains("U+200B ZERO WIDTH SPACE (a format character)")
        );
    }

    #[test]
    fn a_canonical_resource_parses_as_itself() {
        for ok in [
            "prod/customers",
            "prod/eu-west-1/db 1",
            "café/menü",
            "a",
            "prod/.hidden",
            "prod/..x",
        ] {
            assert_eq!(Resource::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn every_other_spelling_of_a_resource_is_refused_and_named() {
        let cases = [
            ("staging/../prod/customers", "resource has a '..' segment"),
            ("./prod/customers", "resource has a '.' segment"),
            ("prod/./customers", "resource has a '.' segment"),
            ("/prod/customers", "resource starts with '/'"),
            ("prod/customers/", "resource ends with '/'"),
            ("prod//customers", "resource has an empty segment"),
            (
                "\u{200b}prod/customers",
                "resource contains U+200B ZERO WIDTH SPACE (a format character)",
            ),
            (
                "prod/\u{202e}sremotsuc",
                "resource contains U+202E RIGHT-TO-LEFT OVERRIDE (a format character)",
            ),
            (
                "prod/cust\u{feff}omers",
                "U+FEFF ZERO WIDTH NO-BREAK SPACE (a format character)",
            ),
            (" prod/customers", "resource starts with whitespace"),
            ("prod/customers ", "resource ends with whitespace"),
            ("prod/ customers", "whitespace at its start or end"),
            (
                "prod/\tcustomers",
                "U+0009 CHARACTER TABULATION (a control character)",
            ),
            ("prod/\u{2028}x", "U+2028 LINE SEPARATOR (a line separator)"),
            ("prod\\customers", "contains '\\'"),
            ("staging/%2e%2e/prod", "percent-encoded dot"),
            (
                "cafe\u{301}/menu",
                "not in Unicode NFC form; write it as 'caf\u{e9}/menu'",
            ),
            ("", "resource must not be empty"),
        ];
        for (input, want) in cases {
            let err = Resource::parse(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        assert!(Resource::parse(&"a".repeat(513)).is_err());
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
