//! `countersign exec -- CMD ARGS…`: the command guard. The exact argv, the
//! working directory and the names of the environment variables the
//! command will get go into `details`, so approvers see them and the
//! payload hash binds them. The command runs only after approval, and only
//! once the permit is checked to be for this very request: signed by the
//! service's permit key, unexpired, for this action and resource, and
//! carrying the payload hash computed here from this argv. The permit is
//! then redeemed (so it cannot be spent twice) and the process replaced
//! by the command, whose exit code becomes ours.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value, json};

use super::{Asking, exit};
use crate::client::{Client, Failure, status_of};
use crate::domain::{Action, Principal, RequestContent, Risk, Status};
use crate::permits::{self, Expect, TrustedKey};

/// Passed to the command unless absent; everything else is dropped, so
/// approvers know exactly which variables it sees (by name; values can be
/// secrets and are never sent).
const DEFAULT_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TERM"];

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub asking: Asking,
    /// One line for the approver (default: the command line).
    #[arg(long)]
    pub summary: Option<String>,
    /// Also pass this environment variable to the command (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// Verify the permit with this public key (PEM from `countersign permit
    /// public-key`) instead of the service's JWKS.
    #[arg(long)]
    pub public_key: Option<std::path::PathBuf>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

pub fn main(args: ExecArgs) -> ExitCode {
    match run(args) {
        // `run` only returns when the command did not run.
        Ok((code, why)) => {
            eprintln!("countersign exec: {why}; the command was not run");
            ExitCode::from(code)
        }
        Err(f) => {
            eprintln!("countersign exec: {f}; not approved, the command was not run");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn run(args: ExecArgs) -> Result<(u8, String), Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure(format!("cannot read the working directory: {e}")))?;
    let cwd = cwd
        .to_str()
        .ok_or_else(|| Failure("the working directory is not UTF-8".into()))?
        .to_string();
    let mut names: Vec<String> = DEFAULT_ENV
        .iter()
        .map(|s| s.to_string())
        .chain(args.pass_env.iter().cloned())
        .filter(|n| std::env::var_os(n).is_some())
        .collect();
    names.sort();
    names.dedup();
    let mut details = Map::new();
    details.insert("argv".into(), json!(args.command));
    details.insert("cwd".into(), json!(cwd));
    details.insert("env".into(), json!(names));
    let summary = args.summary.clone().unwrap_or_else(|| {
        format!(
            "Run: {}",
            super::resource::display(&args.command.join(" "), 900)
        )
    });
    let a = &args.asking;
    let body = super::body(a, &summary, &details);
    let client = Client::from_env()?;
    let rt = super::runtime().map_err(|e| Failure(format!("cannot start: {e}")))?;
    let permit = rt.block_on(async {
        let deadline = super::request::deadline(a.wait);
        let created = client.create(&body, None).await?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        // What this argv hashes to, computed here: the permit must carry it.
        let hash = local_hash(a, &summary, &details, &created)?;
        let now = client.wait_final(created, deadline).await?;
        let status = status_of(&now)?;
        if status != Status::Approved {
            if status == Status::Pending {
                client.cancel(&id).await;
            }
            return Ok(Err((super::exit_code(status), super::outcome(&now))));
        }
        let token = client.permit(&id).await?;
        let keys = match &args.public_key {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
                vec![TrustedKey::from_pem(&text).map_err(Failure)?]
            }
            None => permits::parse_jwks(&client.jwks().await?).map_err(Failure)?,
        };
        let expect = Expect {
            jti: Some(id.clone()),
            action: Some(a.action.clone()),
            resource: Some(a.resource.clone()),
            payload_sha256: Some(hash),
        };
        permits::verify(&token, &keys, &expect, crate::clock::now().timestamp())
            .map_err(|r| Failure(format!("the permit for request {id} is refused: {r}")))?;
        client.redeem(&id, &token).await?;
        Ok::<_, Failure>(Ok((token, names)))
    })?;
    let (token, names) = match permit {
        Ok(p) => p,
        Err(not_run) => return Ok(not_run),
    };
    drop(rt);
    Err(run_command(&args.command, &names, &token))
}

fn local_hash(
    a: &Asking,
    summary: &str,
    details: &Map<String, Value>,
    created: &Value,
) -> Result<String, Failure> {
    let bad = |e: String| Failure(format!("cannot check the request: {e}"));
    let requester =
        Principal::parse(created["requester"].as_str().unwrap_or_default()).map_err(bad)?;
    let content = RequestContent {
        action: Action::parse(&a.action).map_err(bad)?,
        resource: a.resource.clone(),
        summary: summary.to_string(),
        justification: a.justification.clone(),
        details: details.clone(),
        risk: Risk::parse(a.risk.as_deref().unwrap_or("medium")).map_err(bad)?,
        on_behalf_of: a
            .on_behalf_of
            .as_deref()
            .map(Principal::parse)
            .transpose()
            .map_err(bad)?,
    };
    let hash = content.payload_hash(&requester).as_str().to_string();
    if created["payload_sha256"].as_str() != Some(hash.as_str()) {
        return Err(Failure(
            "the service's payload_sha256 is not the hash of the command asked about".into(),
        ));
    }
    Ok(hash)
}

/// Replaces this process with the command (signals, stdin and the exit
/// code are then the command's own). Returns only if that failed.
fn run_command(argv: &[String], names: &[String], permit: &str) -> Failure {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear();
    for n in names {
        if let Some(v) = std::env::var_os(n) {
            cmd.env(n, v);
        }
    }
    // The redeemed permit, for a target that checks it again.
    cmd.env("COUNTERSIGN_PERMIT", permit);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        Failure(format!("approved, but cannot run {}: {e}", argv[0]))
    }
    #[cfg(not(unix))]
    {
        match cmd.status() {
            Ok(s) => std::process::exit(s.code().unwrap_or(1)),
            Err(e) => Failure(format!("approved, but cannot run {}: {e}", argv[0])),
        }
    }
}
