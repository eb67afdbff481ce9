//! Policy: ordered rules that say what happens to a request.
//!
//! A policy file names groups of people and lists rules; the first rule
//! whose `action`, `resource` and `risk` match decides. A request no rule
//! matches falls to `default`, which can require approval or deny but never
//! allow: the policy fails closed. Without a file the built-in default asks
//! one human to approve everything within 15 minutes and denies on expiry.
//!
//! ```yaml
//! groups:
//!   sre: [user:alice@example.com, user:bob@example.com]
//!   auditors: [user:carol@example.com]
//! rules:
//!   - name: prod-exports
//!     action: db.export
//!     resource: "prod/**"
//!     risk: [high, critical]
//!     effect: require_approval
//!     approvals: 2
//!     approvers: [group:sre]
//!     expires_in: 30m
//!     slack_channel: C0APPROVALS
//!   - name: reads
//!     action: "db.read*"
//!     effect: allow
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::escalation::Escalation;
use super::principal::Principal;
use super::request::{MAX_EXPIRY, MIN_EXPIRY, Risk, parse_duration};

/// What happens when a pending request's deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExpiry {
    Deny,
    Approve,
}

impl OnExpiry {
    pub fn as_str(self) -> &'static str {
        match self {
            OnExpiry::Deny => "deny",
            OnExpiry::Approve => "approve",
        }
    }
    pub fn parse(s: &str) -> Self {
        if s == "approve" {
            OnExpiry::Approve
        } else {
            OnExpiry::Deny
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalSpec {
    pub approvals: u32,
    /// Expanded from users and groups; empty means any human may decide.
    pub approvers: Vec<Principal>,
    pub expires_in: Duration,
    pub on_expiry: OnExpiry,
    pub slack_channel: Option<String>,
    pub teams_conversation: Option<String>,
    /// Whether the human an agent acted for is told the outcome in a
    /// direct message (`notify_on_behalf_of`, default true).
    pub notify_on_behalf_of: bool,
    /// While pending, remind the approvers this often (`remind_every`)…
    pub remind_every: Option<Duration>,
    /// …at most this many times (`remind_max`, default 3).
    pub remind_max: u32,
    /// `escalate_after` with `escalate_to`: who else may approve once the
    /// request has waited that long.
    /// Boxed: most rules have none, and it would double every `Effect`.
    pub escalation: Option<Box<Escalation>>,
    /// `step_up: console`: only a console decision with the resource
    /// re-typed counts; a chat click is refused and pointed there.
    pub step_up: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Allow,
    Deny,
    RequireApproval(ApprovalSpec),
}

impl Effect {
    pub fn name(&self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::RequireApproval(_) => "require_approval",
        }
    }
}

#[derive(Debug)]
struct Rule {
    name: String,
    action: Option<Vec<GlobMatcher>>,
    resource: Option<Vec<GlobMatcher>>,
    risk: Option<Vec<Risk>>,
    effect: Effect,
}

#[derive(Debug)]
pub struct Policy {
    /// SHA-256 of the policy source; recorded on every request.
    pub version: String,
    /// Where the policy came from: a path, or `built-in`.
    pub origin: String,
    rules: Vec<Rule>,
    default: Effect,
    groups: BTreeMap<String, Vec<Principal>>,
}

/// The outcome of evaluating a request against the policy.
#[derive(Debug, Clone)]
pub struct Evaluation<'a> {
    pub rule: &'a str,
    pub version: &'a str,
    pub effect: &'a Effect,
}

pub const DEFAULT_RULE: &str = "default";

const BUILT_IN: &str =
    "# built-in: every action needs one human approval within 15 minutes\nrules: []\n";

impl Policy {
    /// Whether any rule sends reminders (else the sweeper has nothing to do).
    pub fn any_reminders(&self) -> bool {
        self.rules.iter().any(
            |r| matches!(&r.effect, Effect::RequireApproval(spec) if spec.remind_every.is_some()),
        )
    }

    /// Whether any rule escalates (else the sweeper has nothing to do).
    pub fn any_escalations(&self) -> bool {
        self.rules.iter().any(
            |r| matches!(&r.effect, Effect::RequireApproval(spec) if spec.escalation.is_some()),
        )
    }

    /// Rule `name`'s escalation, if it has one.
    pub fn escalation(&self, name: &str) -> Option<&Escalation> {
        match &self.rules.iter().find(|r| r.name == name)?.effect {
            Effect::RequireApproval(spec) => spec.escalation.as_deref(),
            _ => None,
        }
    }

    /// How often and how many times rule `name` reminds its approvers of
    /// a pending request, if it does.
    pub fn reminders(&self, name: &str) -> Option<(Duration, u32)> {
        match &self.rules.iter().find(|r| r.name == name)?.effect {
            Effect::RequireApproval(spec) => spec.remind_every.map(|e| (e, spec.remind_max)),
            _ => None,
        }
    }

    /// Whether rule `name` tells the on-behalf-of human the outcome. A rule
    /// that is gone (the policy changed) or is the default keeps the
    /// default: yes.
    pub fn notifies_on_behalf_of(&self, name: &str) -> bool {
        let effect = self
            .rules
            .iter()
            .find(|r| r.name == name)
            .map_or(&self.default, |r| &r.effect);
        match effect {
            Effect::RequireApproval(spec) => spec.notify_on_behalf_of,
            _ => true,
        }
    }

    pub fn built_in() -> Self {
        Self::parse(BUILT_IN, "built-in").expect("the built-in policy is valid")
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read policy file {}: {e}", path.display()))?;
        Self::parse(&source, &path.display().to_string())
    }

    pub fn parse(source: &str, origin: &str) -> Result<Self, String> {
        let raw: RawPolicy = serde_norway::from_str(source).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            format!("policy {origin}{at}: {e}")
        })?;
        let version = hex::encode(Sha256::digest(source.as_bytes()));

        let mut groups = BTreeMap::new();
        for (name, members) in &raw.groups {
            let mut parsed = Vec::new();
            for m in members {
                let p = Principal::parse(m).map_err(|e| {
                    format!(
                        "policy {origin} line {}: group '{name}': {e}",
                        line_of(source, m)
                    )
                })?;
                parsed.push(p);
            }
            groups.insert(name.clone(), parsed);
        }

        let mut names = BTreeSet::new();
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let line = rule_line(source, i);
            let at = |msg: String| format!("policy {origin} line {line}: rule '{}': {msg}", r.name);
            if r.name.trim().is_empty() {
                return Err(format!(
                    "policy {origin} line {line}: every rule needs a name"
                ));
            }
            if r.name == DEFAULT_RULE || !names.insert(r.name.clone()) {
                return Err(at("rule names must be unique and not 'default'".into()));
            }
            let action = compile_globs(r.action.as_ref(), false).map_err(&at)?;
            let resource = compile_globs(r.resource.as_ref(), true).map_err(&at)?;
            let risk = match &r.risk {
                None => None,
                Some(list) => Some(
                    list.to_vec()
                        .iter()
                        .map(|s| Risk::parse(s))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(&at)?,
                ),
            };
            let effect = compile_effect(&r.effect, &groups).map_err(&at)?;
            rules.push(Rule {
                name: r.name,
                action,
                resource,
                risk,
                effect,
            });
        }

        let default = match raw.default {
            None => Effect::RequireApproval(ApprovalSpec {
                approvals: 1,
                approvers: vec![],
                expires_in: Duration::from_secs(15 * 60),
                on_expiry: OnExpiry::Deny,
                slack_channel: None,
                teams_conversation: None,
                notify_on_behalf_of: true,
                remind_every: None,
                remind_max: DEFAULT_REMIND_MAX,
                escalation: None,
                step_up: false,
            }),
            Some(d) => {
                let effect = compile_effect(&d, &groups).map_err(|e| {
                    format!(
                        "policy {origin} line {}: default: {e}",
                        line_of(source, "default:")
                    )
                })?;
                if effect == Effect::Allow {
                    return Err(format!(
                        "policy {origin} line {}: default: may not be 'allow'; a request no rule matches must fail closed",
                        line_of(source, "default:")
                    ));
                }
                effect
            }
        };

        Ok(Self {
            version,
            origin: origin.to_string(),
            rules,
            default,
            groups,
        })
    }

    /// First match wins; no match falls to the fail-closed default.
    pub fn evaluate(&self, action: &str, resource: &str, risk: Risk) -> Evaluation<'_> {
        for rule in &self.rules {
            let matches = rule
                .action
                .as_ref()
                .is_none_or(|g| g.iter().any(|m| m.is_match(action)))
                && rule
                    .resource
                    .as_ref()
                    .is_none_or(|g| g.iter().any(|m| m.is_match(resource)))
                && rule.risk.as_ref().is_none_or(|r| r.contains(&risk));
            if matches {
                return Evaluation {
                    rule: &rule.name,
                    version: &self.version,
                    effect: &rule.effect,
                };
            }
        }
        Evaluation {
            rule: DEFAULT_RULE,
            version: &self.version,
            effect: &self.default,
        }
    }

    /// Members of the `auditors` group: who may read the trail from chat.
    pub fn auditors(&self) -> &[Principal] {
        self.groups
            .get("auditors")
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn group(&self, name: &str) -> Option<&[Principal]> {
        self.groups.get(name).map(Vec::as_slice)
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

fn compile_globs(
    spec: Option<&OneOrMany>,
    resource: bool,
) -> Result<Option<Vec<GlobMatcher>>, String> {
    let Some(spec) = spec else { return Ok(None) };
    let mut out = Vec::new();
    for pattern in spec.to_vec() {
        // In resources `*` stays within one path segment and `**` crosses
        // them, as in a file system; actions have no segments. A resource
        // glob is held to the canonical form requests are (a `..` or a
        // zero-width character in it could never match, or would match
        // something else than it reads as): a policy error, not a rule
        // that silently never applies.
        if resource {
            super::request::check_canonical_path(&format!("resource glob '{pattern}'"), &pattern)?;
        }
        let glob = if resource {
            GlobBuilder::new(&pattern).literal_separator(true).build()
        } else {
            Glob::new(&pattern)
        }
        .map_err(|e| format!("'{pattern}' is not a valid glob: {e}"))?;
        out.push(glob.compile_matcher());
    }
    Ok(Some(out))
}

fn compile_effect(
    raw: &RawEffect,
    groups: &BTreeMap<String, Vec<Principal>>,
) -> Result<Effect, String> {
    let only_for_approval = raw.approvals.is_some()
        || raw.approvers.is_some()
        || raw.expires_in.is_some()
        || raw.on_expiry.is_some()
        || raw.slack_channel.is_some()
        || raw.teams_conversation.is_some()
        || raw.notify_on_behalf_of.is_some()
        || raw.remind_every.is_some()
        || raw.remind_max.is_some()
        || raw.escalate_after.is_some()
        || raw.escalate_to.is_some()
        || raw.escalate_channel.is_some()
        || raw.escalate_conversation.is_some()
        || raw.step_up.is_some();
    match raw.effect.as_str() {
        "allow" | "deny" if only_for_approval => Err(format!(
            "approvals, approvers, expires_in, on_expiry, chat destinations, notify_on_behalf_of, reminders, escalation and step_up only apply to effect require_approval, not {}",
            raw.effect
        )),
        "allow" => Ok(Effect::Allow),
        "deny" => Ok(Effect::Deny),
        "require_approval" => {
            let approvals = raw.approvals.unwrap_or(1);
            if !(1..=20).contains(&approvals) {
                return Err(format!(
                    "approvals must be between 1 and 20, not {approvals}"
                ));
            }
            let approvers = expand_people("approvers", raw.approvers.iter().flatten(), groups)?;
            if !approvers.is_empty() && approvers.len() < approvals as usize {
                return Err(format!(
                    "needs {approvals} approvals but only {} distinct people may approve",
                    approvers.len()
                ));
            }
            let expires_in = match &raw.expires_in {
                Some(s) => parse_duration(s)?,
                None => Duration::from_secs(15 * 60),
            };
            let remind_every = raw
                .remind_every
                .as_deref()
                .map(parse_duration)
                .transpose()?;
            if remind_every.is_some_and(|r| r < MIN_EXPIRY) {
                return Err("remind_every must be at least 1s".into());
            }
            let remind_max = raw.remind_max.unwrap_or(DEFAULT_REMIND_MAX);
            if remind_max > 100 {
                return Err(format!("remind_max must be at most 100, not {remind_max}"));
            }
            let escalation = compile_escalation(raw, groups)?;
            let step_up = match raw.step_up.as_deref() {
                None => false,
                Some("console") => true,
                Some(other) => {
                    return Err(format!(
                        "step_up '{other}' is unknown: the only step-up is console"
                    ));
                }
            };
            if !(MIN_EXPIRY..=MAX_EXPIRY).contains(&expires_in) {
                return Err("expires_in must be between 1s and 30d".into());
            }
            Ok(Effect::RequireApproval(ApprovalSpec {
                approvals,
                approvers: approvers.into_iter().collect(),
                expires_in,
                on_expiry: raw.on_expiry.unwrap_or(OnExpiry::Deny),
                slack_channel: raw.slack_channel.clone(),
                teams_conversation: raw.teams_conversation.clone(),
                notify_on_behalf_of: raw.notify_on_behalf_of.unwrap_or(true),
                remind_every,
                remind_max,
                escalation,
                step_up,
            }))
        }
        other => Err(format!(
            "effect '{other}' is unknown: use allow, deny or require_approval"
        )),
    }
}

/// Users and groups (`group:<name>`) as the set of people they name; each
/// must be a human, since agents and services never approve. `key` names
/// the policy key in the error.
fn expand_people<'a>(
    key: &str,
    entries: impl Iterator<Item = &'a String>,
    groups: &BTreeMap<String, Vec<Principal>>,
) -> Result<BTreeSet<Principal>, String> {
    let mut people = BTreeSet::new();
    for entry in entries {
        if let Some(group) = entry.strip_prefix("group:") {
            let members = groups.get(group).ok_or_else(|| {
                format!("{key} names group '{group}', which is not defined under groups")
            })?;
            people.extend(members.iter().cloned());
        } else {
            people.insert(Principal::parse(entry).map_err(|e| format!("{key}: {e}"))?);
        }
    }
    if let Some(p) = people.iter().find(|p| !p.is_human()) {
        let who = if key == "approvers" { "approver" } else { key };
        return Err(format!(
            "{who} {p} is not a user: agents and services never approve"
        ));
    }
    Ok(people)
}

/// `escalate_after`, `escalate_to` and where to tell: both of the first two
/// or neither, since one without the other never escalates anyone.
fn compile_escalation(
    raw: &RawEffect,
    groups: &BTreeMap<String, Vec<Principal>>,
) -> Result<Option<Box<Escalation>>, String> {
    let after = raw
        .escalate_after
        .as_deref()
        .map(|s| parse_duration(s).map_err(|e| format!("escalate_after: {e}")))
        .transpose()?;
    let (after, names) = match (after, &raw.escalate_to) {
        (None, None) => {
            if raw.escalate_channel.is_some() || raw.escalate_conversation.is_some() {
                return Err(
                    "escalate_channel and escalate_conversation need escalate_after and escalate_to"
                        .into(),
                );
            }
            return Ok(None);
        }
        (Some(after), Some(to)) => (after, to),
        (Some(_), None) => return Err("escalate_after needs escalate_to: whom to add".into()),
        (None, Some(_)) => return Err("escalate_to needs escalate_after: when to add them".into()),
    };
    if !(MIN_EXPIRY..=MAX_EXPIRY).contains(&after) {
        return Err("escalate_after must be between 1s and 30d".into());
    }
    let to = expand_people("escalate_to", names.iter(), groups)?;
    if to.is_empty() {
        return Err("escalate_to must name at least one user or group".into());
    }
    Ok(Some(Box::new(Escalation {
        after,
        to: to.into_iter().collect(),
        names: names.clone(),
        slack_channel: raw.escalate_channel.clone(),
        teams_conversation: raw.escalate_conversation.clone(),
    })))
}

/// The 1-based line of the `index`-th item of the top-level `rules:` list,
/// so a semantic error can point where a YAML parse error would.
fn rule_line(source: &str, index: usize) -> usize {
    let mut in_rules = false;
    let mut indent = None;
    let mut seen = 0;
    for (n, line) in source.lines().enumerate() {
        if !line.starts_with(' ')
            && !line.starts_with('-')
            && !line.trim().is_empty()
            && !line.starts_with('#')
        {
            in_rules = line.trim_end().starts_with("rules:");
            continue;
        }
        if !in_rules {
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("- ") || trimmed == "-" {
            let this = line.len() - trimmed.len();
            if *indent.get_or_insert(this) == this {
                if seen == index {
                    return n + 1;
                }
                seen += 1;
            }
        }
    }
    1
}

fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(needle))
        .map(|n| n + 1)
        .unwrap_or(1)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    default: Option<RawEffect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    action: Option<OneOrMany>,
    #[serde(default)]
    resource: Option<OneOrMany>,
    #[serde(default)]
    risk: Option<OneOrMany>,
    #[serde(flatten)]
    effect: RawEffect,
}

#[derive(Debug, Deserialize)]
struct RawEffect {
    effect: String,
    #[serde(default)]
    approvals: Option<u32>,
    #[serde(default)]
    approvers: Option<Vec<String>>,
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    on_expiry: Option<OnExpiry>,
    #[serde(default)]
    slack_channel: Option<String>,
    #[serde(default)]
    teams_conversation: Option<String>,
    #[serde(default)]
    notify_on_behalf_of: Option<bool>,
    #[serde(default)]
    remind_every: Option<String>,
    #[serde(default)]
    remind_max: Option<u32>,
    #[serde(default)]
    escalate_after: Option<String>,
    #[serde(default)]
    escalate_to: Option<Vec<String>>,
    #[serde(default)]
    escalate_channel: Option<String>,
    #[serde(default)]
    escalate_conversation: Option<String>,
    #[serde(default)]
    step_up: Option<String>,
}

/// How many reminders a rule with `remind_every` sends unless it says.
pub const DEFAULT_REMIND_MAX: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
groups:
  sre: [user:alice@example.com, user:bob@example.com]
  auditors: [user:carol@example.com]
rules:
  - name: prod-exports
    action: db.export
    resource: "prod/**"
    risk: [high, critical]
    effect: require_approval
    approvals: 2
    approvers: [group:sre]
    expires_in: 30m
  - name: reads
    action: "db.read*"
    effect: allow
  - name: drops
    action: db.drop
    effect: deny
"#;

    #[test]
    fn the_first_matching_rule_wins() {
        let p = Policy::parse(EXAMPLE, "test").unwrap();
        let e = p.evaluate("db.export", "prod/customers", Risk::High);
        assert_eq!(e.rule, "prod-exports");
        let Effect::RequireApproval(spec) = e.effect else {
            panic!()
        };
        assert_eq!(spec.approvals, 2);
        assert_eq!(spec.approvers.len(), 2);
        assert_eq!(
            p.evaluate("db.read_rows", "x", Risk::Low).effect,
            &Effect::Allow
        );
        assert_eq!(p.evaluate("db.drop", "x", Risk::Low).effect, &Effect::Deny);
    }

    #[test]
    fn no_match_falls_to_a_fail_closed_default() {
        let p = Policy::parse(EXAMPLE, "test").unwrap();
        let e = p.evaluate("db.export", "prod/customers", Risk::Low);
        assert_eq!(e.rule, DEFAULT_RULE);
        assert!(matches!(e.effect, Effect::RequireApproval(s) if s.on_expiry == OnExpiry::Deny));
    }

    #[test]
    fn resource_star_stays_within_one_segment() {
        let src = "rules:\n  - name: r\n    resource: prod/*\n    effect: allow\n";
        let p = Policy::parse(src, "t").unwrap();
        assert_eq!(p.evaluate("a", "prod/x", Risk::Low).rule, "r");
        assert_eq!(p.evaluate("a", "prod/x/y", Risk::Low).rule, DEFAULT_RULE);
    }

    #[test]
    fn errors_name_the_line() {
        let src = "groups: {}\nrules:\n  - name: ok\n    effect: allow\n  - name: bad\n    effect: require_approval\n    approvers: [group:nobody]\n";
        let err = Policy::parse(src, "p.yaml").unwrap_err();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("nobody"), "{err}");
        let err = Policy::parse("rules:\n  - name: x\n    efect: allow\n", "p.yaml").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn agents_cannot_be_approvers_and_quorum_must_be_reachable() {
        let src = "rules:\n  - name: r\n    effect: require_approval\n    approvers: [agent:bot]\n";
        assert!(
            Policy::parse(src, "t")
                .unwrap_err()
                .contains("never approve")
        );
        let src = "rules:\n  - name: r\n    effect: require_approval\n    approvals: 3\n    approvers: [user:a@x.io, user:b@x.io]\n";
        assert!(Policy::parse(src, "t").unwrap_err().contains("only 2"));
    }

    #[test]
    fn the_default_may_not_allow() {
        assert!(Policy::parse("default:\n  effect: allow\n", "t").is_err());
        assert!(Policy::parse("default:\n  effect: deny\n", "t").is_ok());
    }

    #[test]
    fn a_resource_glob_that_is_not_canonical_is_a_policy_error() {
        for (glob, want) in [
            ("staging/../prod/**", "'..' segment"),
            ("/prod/**", "starts with '/'"),
            ("\"\\u200bprod/**\"", "U+200B ZERO WIDTH SPACE"),
        ] {
            let src = format!("rules:\n  - name: r\n    resource: {glob}\n    effect: allow\n");
            let err = Policy::parse(&src, "p.yaml").unwrap_err();
            assert!(err.contains(want), "{glob}: {err}");
            assert!(err.contains("rule 'r'"), "{err}");
        }
        let src = "rules:\n  - name: r\n    resource: \"{prod,staging}/**\"\n    effect: allow\n";
        assert!(Policy::parse(src, "t").is_ok());
    }

    #[test]
    fn the_person_an_agent_acts_for_is_told_the_outcome_unless_the_rule_says_not() {
        let p = Policy::parse(
            "rules:\n  - name: quiet\n    action: db.*\n    effect: require_approval\n    notify_on_behalf_of: false\n  - name: loud\n    action: deploy.*\n    effect: require_approval\n",
            "test",
        )
        .unwrap();
        assert!(!p.notifies_on_behalf_of("quiet"));
        assert!(p.notifies_on_behalf_of("loud"));
        assert!(
            p.notifies_on_behalf_of("gone since"),
            "a rule that is gone keeps the default"
        );
        let err = Policy::parse(
            "rules:\n  - name: a\n    action: x.*\n    effect: allow\n    notify_on_behalf_of: false\n",
            "test",
        )
        .unwrap_err();
        assert!(err.contains("notify_on_behalf_of"), "{err}");
    }

    #[test]
    fn a_rule_may_remind_its_approvers_a_few_times() {
        let p = Policy::parse(
            "rules:\n  - name: nag\n    action: db.*\n    effect: require_approval\n    remind_every: 15m\n  - name: quiet\n    action: x.*\n    effect: require_approval\n",
            "test",
        )
        .unwrap();
        assert!(p.any_reminders());
        assert_eq!(
            p.reminders("nag"),
            Some((Duration::from_secs(900), DEFAULT_REMIND_MAX))
        );
        assert_eq!(p.reminders("quiet"), None);
        assert!(Policy::parse("rules:\n  - name: a\n    action: x.*\n    effect: require_approval\n    remind_every: soon\n", "test").is_err());
    }

    #[test]
    fn step_up_console_is_read_and_only_for_require_approval() {
        let p = Policy::parse(
            "rules:\n  - name: drop\n    action: db.drop\n    effect: require_approval\n    step_up: console\n",
            "test",
        )
        .unwrap();
        match p.evaluate("db.drop", "prod/users", Risk::High).effect {
            Effect::RequireApproval(spec) => assert!(spec.step_up),
            other => panic!("{other:?}"),
        }
        assert!(
            Policy::parse(
                "rules:\n  - name: a\n    action: x.*\n    effect: allow\n    step_up: console\n",
                "test"
            )
            .is_err()
        );
        let err = Policy::parse("rules:\n  - name: a\n    action: x.*\n    effect: require_approval\n    step_up: sms\n", "test").unwrap_err();
        assert!(err.contains("step_up"), "{err}");
    }

    const ESCALATING: &str = "groups:\n  oncall: [user:carol@example.com, user:dan@example.com]\nrules:\n  - name: drop\n    action: db.*\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    escalate_after: 30m\n    escalate_to: [group:oncall, user:erin@example.com]\n    escalate_channel: C0ONCALL\n";

    #[test]
    fn a_rule_may_escalate_to_groups_and_users_after_a_while() {
        let p = Policy::parse(ESCALATING, "test").unwrap();
        assert!(p.any_escalations());
        let e = p.escalation("drop").expect("escalates");
        assert_eq!(e.after, Duration::from_secs(1800));
        let to: Vec<&str> = e.to.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            to,
            [
                "user:carol@example.com",
                "user:dan@example.com",
                "user:erin@example.com"
            ]
        );
        assert_eq!(e.label(), "oncall, erin@example.com");
        assert_eq!(e.slack_channel.as_deref(), Some("C0ONCALL"));
        assert_eq!(e.teams_conversation, None);
        assert!(p.escalation("default").is_none());
    }

    fn refusal(extra: &str) -> String {
        let src = format!(
            "groups:\n  oncall: [user:carol@example.com]\nrules:\n  - name: a\n    action: x.*\n    effect: require_approval\n{extra}"
        );
        Policy::parse(&src, "test").unwrap_err()
    }

    #[test]
    fn bad_escalation_keys_are_refused_at_load_with_the_key_named() {
        let cases = [
            (
                "    escalate_after: soon\n    escalate_to: [group:oncall]\n",
                "escalate_after",
            ),
            (
                "    escalate_after: 0s\n    escalate_to: [group:oncall]\n",
                "escalate_after",
            ),
            ("    escalate_after: 30m\n", "escalate_to"),
            ("    escalate_to: [group:oncall]\n", "escalate_after"),
            (
                "    escalate_after: 30m\n    escalate_to: [group:nobody]\n",
                "group 'nobody'",
            ),
            (
                "    escalate_after: 30m\n    escalate_to: [agent:bot]\n",
                "escalate_to",
            ),
            (
                "    escalate_after: 30m\n    escalate_to: [carol]\n",
                "escalate_to",
            ),
            (
                "    escalate_after: 30m\n    escalate_to: []\n",
                "escalate_to",
            ),
            ("    escalate_channel: C1\n", "escalate_channel"),
        ];
        for (extra, named) in cases {
            let err = refusal(extra);
            assert!(err.contains(named), "{extra:?} -> {err}");
        }
        let err = Policy::parse(
            "rules:\n  - name: a\n    action: x.*\n    effect: allow\n    escalate_after: 1m\n",
            "test",
        )
        .unwrap_err();
        assert!(err.contains("escalation"), "{err}");
    }
}
