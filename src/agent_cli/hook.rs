//! `countersign hook claude-code`: a Claude Code `PreToolUse` hook.
//!
//! Claude Code runs it before each tool call with the call as JSON on
//! stdin. It asks Countersign (action `claude-code.<tool_name>`, resource
//! from the tool input, `details` the tool input, idempotency key the
//! `tool_use_id`), waits for the decision, and prints Claude Code's
//! `hookSpecificOutput` with `permissionDecision` `allow` or `deny`.
//!
//! It always exits 0. Claude Code treats any other non-zero exit than 2 as
//! a non-blocking error and runs the tool anyway, so every failure (bad
//! input, unreachable service, bad key, timeout, a panic) is answered with
//! an explicit deny and its reason instead.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::resource;
use crate::client::{Client, Failure, status_of};
use crate::domain::Status;

#[derive(Debug, Args)]
pub struct ClaudeCodeArgs {
    /// How long to wait for a decision; keep it under the hook's `timeout`
    /// in settings.json. The request expires then too.
    #[arg(long, default_value = "10m", value_parser = super::parse_wait)]
    pub wait: Duration,
    /// On approval print nothing, so Claude Code's own permission rules
    /// still apply; a denial is always printed.
    #[arg(long)]
    pub defer_allowed: bool,
    /// The human Claude Code works for; they may not approve its calls.
    #[arg(long)]
    pub on_behalf_of: Option<String>,
    /// low, medium, high or critical.
    #[arg(long)]
    pub risk: Option<String>,
}

/// The documented fields of Claude Code's PreToolUse input. Fields Claude
/// Code adds (`transcript_path`, `permission_mode`, …) are ignored; a
/// missing or mistyped documented field is refused.
#[derive(Debug, Deserialize)]
struct HookInput {
    session_id: String,
    cwd: String,
    hook_event_name: String,
    tool_name: String,
    tool_input: Map<String, Value>,
    /// Older Claude Code versions omit it; then retries are new requests.
    tool_use_id: Option<String>,
}

/// The most stdin we read; a tool call is far smaller.
const MAX_INPUT: u64 = 4 << 20;
/// What the service accepts in `details`.
const MAX_DETAILS: usize = 16 * 1024;

/// Prints Claude Code's answer.
pub fn answer(allow: bool, reason: &str) {
    let out = json!({ "hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "permissionDecision": if allow { "allow" } else { "deny" },
        "permissionDecisionReason": reason,
    }});
    println!("{out}");
}

pub fn main(args: ClaudeCodeArgs) -> ExitCode {
    let defer = args.defer_allowed;
    // A panic is a failure like any other: deny, never an exit code.
    let decided = std::panic::catch_unwind(move || decide(args))
        .unwrap_or_else(|_| Err(Failure("the Countersign hook failed unexpectedly".into())));
    match decided {
        Ok((true, _)) if defer => {}
        Ok((allow, reason)) => answer(allow, &reason),
        Err(f) => answer(false, &format!("{f}; not approved")),
    }
    ExitCode::SUCCESS
}

fn decide(args: ClaudeCodeArgs) -> Result<(bool, String), Failure> {
    let mut raw = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Failure(format!("cannot read the hook input: {e}")))?;
    if raw.len() as u64 > MAX_INPUT {
        return Err(Failure("the hook input is larger than 4 MiB".into()));
    }
    let input: HookInput = serde_json::from_slice(&raw).map_err(|e| {
        Failure(format!(
            "the hook input is not Claude Code's PreToolUse JSON: {e}"
        ))
    })?;
    if input.hook_event_name != "PreToolUse" {
        return Err(Failure(format!(
            "this hook answers PreToolUse, not {}",
            resource::display(&input.hook_event_name, 60)
        )));
    }
    let body = request_body(&input, &args)?;
    let client = Client::from_env()?;
    let rt = super::runtime().map_err(|e| Failure(format!("cannot start: {e}")))?;
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + args.wait;
        let created = client.create(&body, input.tool_use_id.as_deref()).await?;
        let now = client.wait_final(created, deadline).await?;
        let status = status_of(&now)?;
        if status == Status::Pending {
            let id = now["id"].as_str().unwrap_or_default();
            client.cancel(id).await;
            return Ok((
                false,
                format!(
                    "Countersign request {id}: no decision within {}; not approved",
                    humantime::format_duration(args.wait)
                ),
            ));
        }
        Ok((status == Status::Approved, super::outcome(&now)))
    })
}

fn request_body(input: &HookInput, args: &ClaudeCodeArgs) -> Result<Value, Failure> {
    let tool = &input.tool_name;
    let action = format!("claude-code.{tool}");
    crate::domain::Action::parse(&action).map_err(|e| {
        Failure(format!(
            "tool {} cannot be asked about: {e}",
            resource::display(tool, 60)
        ))
    })?;
    let resource = resource::for_tool(tool, &input.tool_input, &input.cwd).map_err(Failure)?;
    let what = match tool.as_str() {
        "Bash" => input.tool_input.get("command"),
        "Edit" | "Write" | "Read" | "MultiEdit" => input.tool_input.get("file_path"),
        "NotebookEdit" => input.tool_input.get("notebook_path"),
        "WebFetch" => input.tool_input.get("url"),
        _ => None,
    }
    .and_then(Value::as_str);
    let summary = match what {
        Some(w) => format!("Claude Code {tool}: {}", resource::display(w, 300)),
        None => format!("Claude Code wants to use {}", resource::display(tool, 200)),
    };
    let mut body = json!({
        "action": action,
        "resource": resource,
        "summary": summary,
        "justification": format!(
            "Claude Code session {} in {}",
            resource::display(&input.session_id, 200),
            resource::display(&input.cwd, 1000)
        ),
        "details": fit_details(&input.tool_input),
        "expires_in": format!("{}s", args.wait.as_secs().max(1)),
    });
    if let Some(p) = &args.on_behalf_of {
        body["on_behalf_of"] = json!(p);
    }
    if let Some(r) = &args.risk {
        body["risk"] = json!(r);
    }
    Ok(body)
}

/// The tool input as `details`, within the service's 16 KiB: long strings
/// (a file being written) are shortened to their start plus their length
/// and SHA-256, so the approver sees what it is and the hash still binds it.
fn fit_details(input: &Map<String, Value>) -> Map<String, Value> {
    let size =
        |m: &Map<String, Value>| serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
    if size(input) <= MAX_DETAILS && input.len() <= 50 {
        return input.clone();
    }
    let mut out = Map::new();
    for (k, v) in input.iter().take(40) {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let v = if text.len() > 1024 {
            let mut head: String = text.chars().take(1000).collect();
            head.push('…');
            json!({
                "start": head,
                "bytes": text.len(),
                "sha256": crate::domain::PayloadHash::of(text.as_bytes()).as_str(),
            })
        } else {
            v.clone()
        };
        out.insert(k.clone(), v);
        if size(&out) > MAX_DETAILS {
            out.remove(k);
            out.insert("truncated".into(), json!(true));
            break;
        }
    }
    out
}
