//! The grammar of `/audit` (Slack) and `audit …` (Teams), parsed once for
//! both:
//!
//! - `/audit` — recent requests
//! - `/audit <request id>` — that request's timeline
//! - `/audit pending`
//! - `/audit user:alice@example.com` (or a chat mention, resolved by the
//!   channel) — what they requested and decided
//! - `/audit action:<glob> since:<24h|7d|2026-01-31>` (either or both)
//! - `/audit verify` — chain verification
//! - `/audit help`
//!
//! A trailing `page:N` pages long answers.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::principal::Principal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditCommand {
    Recent,
    Request(Uuid),
    Pending,
    /// A principal, or a raw chat mention for the channel to resolve.
    Person(PersonRef),
    Search {
        action: Option<String>,
        since: Option<DateTime<Utc>>,
    },
    Verify,
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonRef {
    Principal(Principal),
    /// A chat mention such as Slack's `<@U123|bob>` or `@bob`.
    Mention(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAudit {
    pub command: AuditCommand,
    /// 1-based.
    pub page: u32,
}

pub const HELP: &str = "Usage: audit [help | login | pending | verify | <request id> | user:EMAIL | @user | action:GLOB since:24h|7d|YYYY-MM-DD] [page:N]";

pub fn parse(text: &str, now: DateTime<Utc>) -> Result<ParsedAudit, String> {
    let mut page = 1;
    let mut words: Vec<&str> = Vec::new();
    for w in text.split_whitespace() {
        if let Some(n) = w.strip_prefix("page:") {
            page = n
                .parse()
                .ok()
                .filter(|n| *n >= 1 && *n <= 1000)
                .ok_or_else(|| format!("page:{n} is not a page number"))?;
        } else {
            words.push(w);
        }
    }
    let command = match words.as_slice() {
        [] => AuditCommand::Recent,
        ["help"] => AuditCommand::Help,
        ["pending"] => AuditCommand::Pending,
        ["verify"] => AuditCommand::Verify,
        [one] if Uuid::parse_str(one).is_ok() => {
            AuditCommand::Request(Uuid::parse_str(one).expect("checked"))
        }
        [one] if one.starts_with("user:") => {
            AuditCommand::Person(PersonRef::Principal(Principal::parse(one)?))
        }
        [one] if one.starts_with('@') || one.starts_with("<@") => {
            AuditCommand::Person(PersonRef::Mention(one.to_string()))
        }
        filters
            if filters
                .iter()
                .all(|w| w.starts_with("action:") || w.starts_with("since:")) =>
        {
            let mut action = None;
            let mut since = None;
            for w in filters {
                if let Some(a) = w.strip_prefix("action:") {
                    if a.is_empty()
                        || !a
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-:/*?[]".contains(c))
                    {
                        return Err(format!("action:{a} is not an action glob like db.*"));
                    }
                    action = Some(a.to_string());
                } else if let Some(s) = w.strip_prefix("since:") {
                    since = Some(crate::clock::parse_since(s, now)?);
                }
            }
            AuditCommand::Search { action, since }
        }
        _ => return Err(format!("I did not understand '{}'. {HELP}", text.trim())),
    };
    Ok(ParsedAudit { command, page })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> AuditCommand {
        parse(s, Utc::now()).unwrap().command
    }

    #[test]
    fn every_form_parses() {
        assert_eq!(p(""), AuditCommand::Recent);
        assert_eq!(p("help"), AuditCommand::Help);
        assert_eq!(p("pending"), AuditCommand::Pending);
        assert_eq!(p("verify"), AuditCommand::Verify);
        assert!(matches!(
            p("01a1fcb0-d246-75b3-94a1-07fd18b71b2a"),
            AuditCommand::Request(_)
        ));
        assert!(matches!(
            p("user:alice@example.com"),
            AuditCommand::Person(PersonRef::Principal(_))
        ));
        assert!(matches!(
            p("<@U123|bob>"),
            AuditCommand::Person(PersonRef::Mention(_))
        ));
        assert!(matches!(
            p("action:db.* since:7d"),
            AuditCommand::Search {
                action: Some(_),
                since: Some(_)
            }
        ));
        assert!(matches!(
            p("since:2026-01-31"),
            AuditCommand::Search {
                action: None,
                since: Some(_)
            }
        ));
        assert_eq!(parse("pending page:3", Utc::now()).unwrap().page, 3);
    }

    #[test]
    fn nonsense_gets_the_usage() {
        assert!(
            parse("drop tables", Utc::now())
                .unwrap_err()
                .contains("Usage")
        );
        assert!(parse("since:yesterdayish", Utc::now()).is_err());
    }
}
