//! `countersign request`: the pipeline step. Creates a request, waits for
//! the decision across as many long-polls as it takes, prints the request
//! as it then stands, and exits 0 approved, 1 denied, 2 expired or
//! cancelled, 3 still pending when `--wait` ran out, 4 any error.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value};

use super::{Asking, exit};
use crate::client::{Client, Failure, status_of};

#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    pub asking: Asking,
    /// One line for the approver.
    #[arg(long)]
    pub summary: String,
    /// A JSON object of facts shown to approvers (and bound by the payload hash).
    #[arg(long)]
    pub details: Option<String>,
    /// Same key and same request: the same approval request (a retried CI
    /// step waits on the first one instead of asking twice).
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

pub fn main(args: RequestArgs) -> ExitCode {
    match run(args) {
        Ok((request, code)) => {
            println!("{request}");
            if code != exit::APPROVED {
                eprintln!("{}", super::outcome(&request));
            }
            ExitCode::from(code)
        }
        Err(f) => {
            eprintln!("error: {f}; not approved");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn run(args: RequestArgs) -> Result<(Value, u8), Failure> {
    let details: Map<String, Value> = match &args.details {
        None => Map::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Failure(format!("--details must be a JSON object: {e}")))?,
    };
    let body = super::body(&args.asking, &args.summary, &details);
    let client = Client::from_env()?;
    let rt = super::runtime().map_err(|e| Failure(format!("cannot start: {e}")))?;
    rt.block_on(async {
        let deadline = deadline(args.asking.wait);
        let created = client
            .create(&body, args.idempotency_key.as_deref())
            .await?;
        let now = client.wait_final(created, deadline).await?;
        let code = super::exit_code(status_of(&now)?);
        Ok((now, code))
    })
}

/// No `--wait`: as long as the request can be pending (30 days at most).
pub fn deadline(wait: Option<std::time::Duration>) -> tokio::time::Instant {
    let wait =
        wait.unwrap_or(crate::domain::request::MAX_EXPIRY + std::time::Duration::from_secs(60));
    tokio::time::Instant::now() + wait
}
