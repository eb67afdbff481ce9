//! The agent-side commands: `hook claude-code`, `request`, `exec` and
//! `permit verify`. They talk to a running service over HTTP
//! (`crate::client`) and never open the database, so they run on the
//! agent's machine with only `COUNTERSIGN_URL` and `COUNTERSIGN_TOKEN`.
//! None of them decides anything: the service does, and any failure to get
//! its answer is "not approved".

pub mod exec;
pub mod hook;
pub mod permit;
pub mod request;
pub mod resource;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::cli::{Cli, Command};
use crate::domain::Status;

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// A Claude Code PreToolUse hook: asks Countersign before each tool call
    /// and prints allow or deny for Claude Code (always exit 0).
    ClaudeCode(hook::ClaudeCodeArgs),
}

#[derive(Debug, Subcommand)]
pub enum PermitCommand {
    /// Check a permit offline: signature, expiry and the claims you name.
    Verify(permit::VerifyArgs),
    /// Print the public key that verifies permits (PEM), from the local key file.
    PublicKey,
}

/// Exit codes of `request` and (before the command runs) `exec`.
pub mod exit {
    pub const APPROVED: u8 = 0;
    pub const DENIED: u8 = 1;
    pub const EXPIRED_OR_CANCELLED: u8 = 2;
    pub const STILL_PENDING: u8 = 3;
    pub const ERROR: u8 = 4;
}

/// Options shared by `request` and `exec` for the request they create.
#[derive(Debug, Clone, Args)]
pub struct Asking {
    /// What is to be done, e.g. `deploy` or `db.migrate`.
    #[arg(long)]
    pub action: String,
    /// What it is done to, in canonical form, e.g. `prod/web`.
    #[arg(long)]
    pub resource: String,
    #[arg(long)]
    pub justification: Option<String>,
    /// low, medium, high or critical (default: the service's, medium).
    #[arg(long)]
    pub risk: Option<String>,
    /// The human this is done for; they may not approve it.
    #[arg(long)]
    pub on_behalf_of: Option<String>,
    /// How long to wait for a decision, e.g. `30m` (default: until the
    /// request is final; it always expires).
    #[arg(long, value_parser = parse_wait)]
    pub wait: Option<Duration>,
    /// Ask for a shorter deadline than the policy rule's, e.g. `15m`.
    #[arg(long)]
    pub expires_in: Option<String>,
}

pub fn parse_wait(s: &str) -> Result<Duration, String> {
    crate::domain::request::parse_duration(s)
}

/// Runs an agent-side command; gives the parsed command line back if it
/// is another one.
pub fn run(cli: Cli) -> Result<ExitCode, Box<Cli>> {
    match cli.command {
        Command::Hook(HookCommand::ClaudeCode(args)) => Ok(hook::main(args)),
        Command::Request(args) => Ok(request::main(args)),
        Command::Exec(args) => Ok(exec::main(args)),
        Command::Permit(PermitCommand::Verify(args)) => Ok(permit::main(args)),
        Command::Permit(PermitCommand::PublicKey) => Ok(permit::public_key(&cli)),
        _ => Err(Box::new(cli)),
    }
}

/// A command line that did not parse: for `hook`, a deny answer Claude
/// Code understands (an exit code would let the tool run); `None` lets
/// clap report it as usual.
pub fn unparsable(e: &clap::Error) -> Option<ExitCode> {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return None;
    }
    let is_hook = std::env::args().skip(1).find(|a| !a.starts_with('-')) == Some("hook".into());
    is_hook.then(|| {
        let first = e.to_string();
        let first = first.lines().next().unwrap_or("bad arguments");
        hook::answer(
            false,
            &format!("Countersign hook misconfigured ({first}); not approved"),
        );
        ExitCode::SUCCESS
    })
}

/// A single-threaded runtime: these commands make a handful of calls, and
/// a hook's start-up time is part of every tool call.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The request body for `request` and `exec`.
fn body(a: &Asking, summary: &str, details: &serde_json::Map<String, Value>) -> Value {
    let mut b = serde_json::json!({
        "action": a.action, "resource": a.resource, "summary": summary, "details": details,
    });
    for (k, v) in [
        ("justification", &a.justification),
        ("risk", &a.risk),
        ("on_behalf_of", &a.on_behalf_of),
        ("expires_in", &a.expires_in),
    ] {
        if let Some(v) = v {
            b[k] = Value::String(v.clone());
        }
    }
    b
}

/// The exit code for a request as it stands.
fn exit_code(status: Status) -> u8 {
    match status {
        Status::Approved => exit::APPROVED,
        Status::Denied => exit::DENIED,
        Status::Expired | Status::Cancelled => exit::EXPIRED_OR_CANCELLED,
        Status::Pending => exit::STILL_PENDING,
    }
}

/// One sentence on how a request ended: who decided, and their comment.
pub fn outcome(request: &Value) -> String {
    let id = request["id"].as_str().unwrap_or("?");
    let status = request["status"].as_str().unwrap_or("?");
    let reason = request["reason"].as_str();
    let with_comment = |d: &Value| {
        let who = d["principal"].as_str().unwrap_or("?");
        match d["comment"].as_str().filter(|c| !c.is_empty()) {
            Some(c) => format!("{who} (\"{c}\")"),
            None => who.to_string(),
        }
    };
    let text = match status {
        "approved" => {
            let people: Vec<String> = request["approvals"]
                .as_array()
                .map(|a| a.iter().map(with_comment).collect())
                .unwrap_or_default();
            if people.is_empty() {
                format!("approved: {}", reason.unwrap_or("by policy"))
            } else {
                format!("approved by {}", people.join(", "))
            }
        }
        "denied" => match request.get("denial").filter(|d| d.is_object()) {
            Some(d) => format!("denied by {}", with_comment(d)),
            None => format!("denied: {}", reason.unwrap_or("by policy")),
        },
        "expired" => format!(
            "expired without enough approvals: {}",
            reason.unwrap_or("expiry denies")
        ),
        "cancelled" => format!("cancelled: {}", reason.unwrap_or("withdrawn")),
        _ => "still pending: no decision yet".to_string(),
    };
    format!("Countersign request {id} {text}")
}
