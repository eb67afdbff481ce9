//! Who someone is, as one string across every channel.
//!
//! `user:alice@example.com` is a human, `agent:deploy-bot` and `service:ci`
//! are machines. Parsing happens once at the edge; past it a `Principal`
//! cannot be malformed, and `is_human` is the only question the decision
//! rules need to ask about its kind.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    User,
    Agent,
    Service,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal(String);

impl Principal {
    /// Parses `kind:name`. User names are e-mail addresses and are compared
    /// case-insensitively, so they are lower-cased here: `Alice@Example.com`
    /// and `alice@example.com` are one person and count once.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!(
                "principal '{s}' must look like user:alice@example.com, agent:NAME or service:NAME"
            )
        })?;
        if name.is_empty() || name.len() > 254 {
            return Err(format!(
                "principal '{s}' needs a name of 1 to 254 characters after '{kind}:'"
            ));
        }
        match kind {
            "user" => {
                let (local, domain) = name.split_once('@').ok_or_else(|| {
                    format!("user principal '{s}' must be an e-mail address, like user:alice@example.com")
                })?;
                let ok = !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_graphic() && c != '<' && c != '>' && c != '"')
                    && name.matches('@').count() == 1;
                if !ok {
                    return Err(format!(
                        "user principal '{s}' is not a valid e-mail address"
                    ));
                }
                Ok(Self(format!("user:{}", name.to_ascii_lowercase())))
            }
            "agent" | "service" => {
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
                {
                    return Err(format!(
                        "{kind} principal '{s}' may only use letters, digits, '-', '_', '.' and '@'"
                    ));
                }
                Ok(Self(format!("{kind}:{name}")))
            }
            other => Err(format!(
                "principal kind '{other}' is unknown: use user:, agent: or service:"
            )),
        }
    }

    pub fn kind(&self) -> PrincipalKind {
        match self.0.split_once(':').map(|(k, _)| k) {
            Some("user") => PrincipalKind::User,
            Some("agent") => PrincipalKind::Agent,
            _ => PrincipalKind::Service,
        }
    }

    pub fn is_human(&self) -> bool {
        self.kind() == PrincipalKind::User
    }

    /// The part after `kind:`, e.g. the e-mail address of a user.
    pub fn name(&self) -> &str {
        self.0.split_once(':').map(|(_, n)| n).unwrap_or(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The principal recorded for things the service itself does
    /// (policy outcomes, expiry, deliveries). It is not parseable on
    /// purpose, so no client can claim it.
    pub fn system() -> &'static str {
        "system:countersign"
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Principal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_principal_is_an_email_and_is_case_insensitive() {
        let p = Principal::parse("user:Alice@Example.com").unwrap();
        assert_eq!(p.as_str(), "user:alice@example.com");
        assert!(p.is_human());
    }

    #[test]
    fn agents_and_services_are_not_human() {
        assert!(!Principal::parse("agent:deploy-bot").unwrap().is_human());
        assert!(!Principal::parse("service:ci").unwrap().is_human());
    }

    #[test]
    fn malformed_principals_are_refused_with_a_reason() {
        for bad in [
            "alice",
            "user:alice",
            "user:@x.com",
            "robot:x",
            "agent:",
            "agent:a b",
            "user:a@b",
        ] {
            assert!(Principal::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
