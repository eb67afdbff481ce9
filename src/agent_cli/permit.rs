//! `countersign permit verify`: checks a permit the way a target should,
//! offline once the keys are known: signature (by a key from the JWKS or a
//! PEM file), expiry, and each claim you name. Exit 0 and the claims on
//! stdout, 1 and what failed on stderr, 4 when it could not check at all.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::exit;
use crate::cli::Cli;
use crate::client::Failure;
use crate::permits::{self, Expect, PermitKey, TrustedKey};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The permit (a compact JWS), or `-` to read it from stdin.
    pub token: String,
    /// Where the keys are (default: $COUNTERSIGN_URL/.well-known/jwks.json).
    #[arg(long, conflicts_with = "public_key")]
    pub jwks: Option<String>,
    /// A public key PEM file (`countersign permit public-key`), for fully offline checks.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long)]
    pub resource: Option<String>,
    #[arg(long)]
    pub payload_sha256: Option<String>,
    /// The approval request's id.
    #[arg(long)]
    pub jti: Option<String>,
}

pub fn main(args: VerifyArgs) -> ExitCode {
    let keys = match keys(&args) {
        Ok(k) => k,
        Err(f) => {
            eprintln!("error: {f}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let token = if args.token == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().take(1 << 16).read_to_string(&mut s) {
            eprintln!("error: cannot read the permit from stdin: {e}");
            return ExitCode::from(exit::ERROR);
        }
        s
    } else {
        args.token.clone()
    };
    let expect = Expect {
        jti: args.jti,
        action: args.action,
        resource: args.resource,
        payload_sha256: args.payload_sha256,
    };
    match permits::verify(&token, &keys, &expect, crate::clock::now().timestamp()) {
        Ok(claims) => {
            println!("{}", serde_json::to_string(&claims).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(r) => {
            eprintln!("permit refused: {r}");
            ExitCode::from(1)
        }
    }
}

fn keys(args: &VerifyArgs) -> Result<Vec<TrustedKey>, Failure> {
    if let Some(path) = &args.public_key {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
        return Ok(vec![TrustedKey::from_pem(&text).map_err(Failure)?]);
    }
    let url = match &args.jwks {
        Some(u) => u.clone(),
        None => {
            let base = std::env::var("COUNTERSIGN_URL")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| crate::client::DEFAULT_URL.into());
            format!("{}/.well-known/jwks.json", base.trim_end_matches('/'))
        }
    };
    let rt = super::runtime().map_err(|e| Failure(format!("cannot start: {e}")))?;
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Failure(format!("cannot build an HTTP client: {e}")))?;
    let doc = rt.block_on(crate::client::fetch_jwks(&http, &url))?;
    permits::parse_jwks(&doc).map_err(|e| Failure(format!("{url}: {e}")))
}

/// `countersign permit public-key`: the PEM of the local permit key, for
/// targets that verify without reaching the service.
pub fn public_key(cli: &Cli) -> ExitCode {
    let overrides = crate::config::Overrides {
        db: cli.db.clone(),
        ..Default::default()
    };
    let settings = match crate::config::Settings::load(
        cli.config.as_deref(),
        |k| std::env::var(k).ok(),
        &overrides,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !settings.permit_key.exists() {
        eprintln!(
            "error: no permit key at {}: run where the service runs, or set COUNTERSIGN_PERMIT_KEY",
            settings.permit_key.display()
        );
        return ExitCode::FAILURE;
    }
    match PermitKey::load_or_create(&settings.permit_key) {
        Ok(k) => {
            print!("{}", k.public_pem());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
