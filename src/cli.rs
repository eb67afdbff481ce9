//! The command line: `serve`, `keys`, `audit`, `policy`, `identities`,
//! `teams`, `migrate`, `mcp`. Answers go to stdout, logs and errors to stderr; a failing
//! command exits non-zero with the reason.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, Overrides, Settings};
use crate::domain::{Policy, Principal};
use crate::store::audit::{Signer, parse_public_key};
use crate::store::keys::{self, NewKey, parse_scopes};
use crate::store::postgres::{self, Backend};
use crate::store::trail::{self, ExportFormat};
use crate::store::{Store, identities};

#[derive(Debug, Parser)]
#[command(
    name = "countersign",
    version,
    about = "An approval gate for autonomous systems"
)]
pub struct Cli {
    /// TOML settings file (also COUNTERSIGN_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// SQLite file path or sqlite: URL, or a postgres:// URL (also
    /// COUNTERSIGN_DB; default countersign.db).
    #[arg(long, global = true)]
    pub db: Option<String>,
    /// Log format (also COUNTERSIGN_LOG_FORMAT).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify and export the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check a policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Link chat accounts to principals.
    #[command(subcommand)]
    Identities(IdentitiesCommand),
    /// Microsoft Teams: conversations the bot posts to.
    #[command(subcommand)]
    Teams(crate::channels::teams::conversations::TeamsCommand),
    /// Agent hooks: `hook claude-code` is a Claude Code PreToolUse hook.
    #[command(subcommand)]
    Hook(crate::agent_cli::HookCommand),
    /// Ask for approval and wait: exit 0 approved, 1 denied, 2 expired or
    /// cancelled, 3 still pending, 4 error.
    Request(crate::agent_cli::request::RequestArgs),
    /// Run a command only once it is approved and its permit checks out.
    Exec(crate::agent_cli::exec::ExecArgs),
    /// Verify permits; print the permit public key.
    #[command(subcommand)]
    Permit(crate::agent_cli::PermitCommand),
    /// Serve the MCP tools over stdio, asking the service at COUNTERSIGN_URL
    /// with the API key in COUNTERSIGN_TOKEN; any failure answers "not approved".
    Mcp {
        /// The service's base URL.
        #[arg(long, env = "COUNTERSIGN_URL", default_value = crate::mcp::stdio::DEFAULT_URL)]
        url: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (also COUNTERSIGN_LISTEN; default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
    /// Policy file (also COUNTERSIGN_POLICY; default: the built-in fail-closed policy).
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print only its token.
    Create {
        /// Who the key speaks for: agent:NAME, service:NAME or user:EMAIL.
        #[arg(long)]
        principal: String,
        /// The human responsible for the key; they may not approve its requests.
        #[arg(long)]
        owner: Option<String>,
        /// Comma-separated: request, read, decide, audit, admin.
        #[arg(long)]
        scopes: String,
        /// A label for listings.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (never their tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain and check the signatures; names the first bad event.
    Verify {
        /// Verify an export file (NDJSON or CSV) instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The public key (PEM or hex) to check signatures with; default: the local signing key.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// A checkpoint file (COUNTERSIGN_AUDIT_CHECKPOINTS): the trail must contain every
        /// signed head in it exactly, so a tail cut back to an earlier head is caught.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// Check the chain, its signatures and any checkpoints only, not the
        /// tables derived from the trail (quicker on a long trail; also for a
        /// trail loaded without its tables, as the benchmark's seeds are).
        #[arg(long)]
        chain_only: bool,
    },
    /// Write the whole trail with hashes and signatures.
    Export {
        #[arg(long, value_enum, default_value = "ndjson")]
        format: CliExportFormat,
        /// Output file; default stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the public key that verifies the trail's signatures (PEM).
    PublicKey,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CliExportFormat {
    Ndjson,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate a policy file; print its rules and version.
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum IdentitiesCommand {
    /// Link slack:TEAM/USER or teams:AAD_OBJECT_ID to a user principal.
    Link { external: String, principal: String },
    /// Remove a link.
    Unlink { external: String },
    /// List links.
    List,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => match crate::agent_cli::unparsable(&e) {
            Some(code) => return code,
            None => e.exit(),
        },
    };
    // The agent-side commands talk to the service, not the database.
    let cli = match crate::agent_cli::run(cli) {
        Ok(code) => return code,
        Err(cli) => *cli,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // A client of the service: it needs none of the server's settings.
    if let Command::Mcp { url } = &cli.command {
        crate::telemetry::init(cli.log_format.unwrap_or(LogFormat::Text), "warn");
        let token = std::env::var("COUNTERSIGN_TOKEN").ok();
        crate::mcp::stdio::run(url, token).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let (listen, policy) = match &cli.command {
        Command::Serve(a) => (a.listen.clone(), a.policy.clone()),
        _ => (None, None),
    };
    let overrides = Overrides {
        db: cli.db.clone(),
        listen,
        policy,
        log_format: cli.log_format,
    };
    let settings = Settings::load(cli.config.as_deref(), |k| std::env::var(k).ok(), &overrides)
        .map_err(|e| anyhow::anyhow!(e))?;
    let quiet = !matches!(cli.command, Command::Serve(_));
    crate::telemetry::init(settings.log_format, if quiet { "warn" } else { "info" });
    // An unknown `scheme://` stops every command before it creates
    // anything (a signing key, a file called `mysql:`).
    backend(&settings)?;
    let out = &mut std::io::stdout().lock();
    match cli.command {
        Command::Serve(_) => {
            let server = crate::startup::Server::build(settings).await?;
            let token = CancellationToken::new();
            crate::startup::handle_signals(server.app.clone(), token.clone());
            server.run(token).await?;
        }
        Command::Migrate => {
            crate::store::migrate(&settings.db).await?;
            let shown = match backend(&settings)? {
                Backend::Sqlite => settings.db.clone(),
                Backend::Postgres => postgres::redacted(&settings.db),
            };
            writeln!(out, "migrated {shown}")?;
        }
        Command::Keys(cmd) => keys_command(&settings, cmd, out).await?,
        Command::Audit(cmd) => return audit_command(&settings, cmd, out).await,
        Command::Policy(PolicyCommand::Check { file }) => {
            let p = Policy::load(&file).map_err(|e| anyhow::anyhow!(e))?;
            writeln!(
                out,
                "policy {} is valid: {} rules, version {}",
                file.display(),
                p.rule_count(),
                p.version
            )?;
        }
        Command::Identities(cmd) => identities_command(&settings, cmd, out).await?,
        Command::Teams(cmd) => {
            let store = open(&settings).await?;
            crate::channels::teams::conversations::command(&store, cli_actor(), cmd, out).await?
        }
        Command::Hook(_) | Command::Request(_) | Command::Exec(_) | Command::Permit(_) => {
            anyhow::bail!("agent commands run through crate::agent_cli::run")
        }
        // Served above, before the server's settings are read.
        Command::Mcp { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Which backend the `db` setting names; an unknown `scheme://` is an error.
fn backend(settings: &Settings) -> anyhow::Result<Backend> {
    postgres::backend_of(&settings.db).map_err(|e| anyhow::anyhow!(e))
}

async fn open(settings: &Settings) -> anyhow::Result<Store> {
    Store::open_with_signer(&settings.db, Signer::from_settings(settings)?, 4).await
}

fn cli_actor() -> String {
    // Recorded as the actor of CLI changes: the operator's login, if known.
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("operator:{user}")
}

async fn keys_command(
    settings: &Settings,
    cmd: KeysCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open(settings).await?;
    match cmd {
        KeysCommand::Create {
            principal,
            owner,
            scopes,
            name,
        } => {
            let new = NewKey {
                principal: Principal::parse(&principal).map_err(|e| anyhow::anyhow!(e))?,
                owner: owner
                    .as_deref()
                    .map(Principal::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!(e))?,
                scopes: parse_scopes(&scopes).map_err(|e| anyhow::anyhow!(e))?,
                name,
            };
            let (id, token) = keys::create(&store, &cli_actor(), new).await?;
            tracing::info!(%id, "key created");
            eprintln!("created key {id}; the token below is shown once");
            writeln!(out, "{token}")?;
        }
        KeysCommand::List { json } => {
            let list = keys::list(&store).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                writeln!(
                    out,
                    "{:<38} {:<12} {:<32} {:<24} {:<8}",
                    "ID", "PREFIX", "PRINCIPAL", "SCOPES", "STATE"
                )?;
                for k in list {
                    let state = if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    writeln!(
                        out,
                        "{:<38} {:<12} {:<32} {:<24} {:<8}",
                        k.id, k.prefix, k.principal, k.scopes, state
                    )?;
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let channels = crate::channels::enabled(settings);
            let cancelled =
                crate::service::approvals::revoke_key(&store, &channels, &cli_actor(), &id).await?;
            writeln!(
                out,
                "revoked {id}; cancelled {} pending requests",
                cancelled.len()
            )?;
        }
    }
    Ok(())
}

async fn audit_command(
    settings: &Settings,
    cmd: AuditCommand,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            file,
            public_key,
            checkpoints,
            chain_only,
        } => {
            let key = match public_key {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        anyhow::anyhow!("cannot read public key {}: {e}", path.display())
                    })?;
                    parse_public_key(&text).map_err(|e| anyhow::anyhow!(e))?
                }
                None if settings.signing_key_pem.is_some() || settings.signing_key.exists() => {
                    Signer::from_settings(settings)?.verifying_key()
                }
                None => anyhow::bail!(
                    "no public key: pass --public-key FILE (from `countersign audit public-key`), or run where the signing key {} is",
                    settings.signing_key.display()
                ),
            };
            // The database's trail on PostgreSQL; an export file needs no database.
            let pg = if file.is_none() && backend(settings)? == Backend::Postgres {
                Some(postgres::connect_with(&settings.db, 2).await?)
            } else {
                None
            };
            let started = std::time::Instant::now();
            let (result, mismatches) = match &file {
                Some(path) => {
                    let f = std::fs::File::open(path)
                        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
                    let r = trail_verify_file(std::io::BufReader::with_capacity(1 << 20, f), key)?;
                    (r, vec![])
                }
                None => match &pg {
                    Some(pool) if chain_only => (postgres::trail::verify(pool, key).await?, vec![]),
                    Some(pool) => {
                        let v = trail::verify_postgres(pool, key).await?;
                        (v.chain, v.mismatches)
                    }
                    None => {
                        if !trail::db_file(&settings.db).exists() {
                            anyhow::bail!("cannot open database {}: no such file", settings.db);
                        }
                        if chain_only {
                            (trail::verify(&settings.db, key).await?, vec![])
                        } else {
                            let v = trail::verify_all(&settings.db, key).await?;
                            (v.chain, v.mismatches)
                        }
                    }
                },
            };
            let source = match (&file, &pg) {
                (Some(path), _) => path.display().to_string(),
                (None, Some(_)) => postgres::redacted(&settings.db),
                (None, None) => settings.db.clone(),
            };
            // A full verify replays the events into every derived table on
            // either backend; only a chain-only run leaves something out,
            // and the report says so.
            let note = chain_only.then_some(
                "checked the chain, its signatures and any checkpoints only (--chain-only), not the tables derived from the trail",
            );
            // Checkpoints are checked only against a chain that verified:
            // otherwise the first break is the finding.
            let checkpoint_failure = match (&checkpoints, &result) {
                (Some(cp), Ok(_)) => {
                    let list = crate::store::checkpoints::read_file(cp)?;
                    let failure = match (&file, &pg) {
                        (Some(path), _) => trail::check_checkpoints_in_export(path, &list, &key)?,
                        (None, Some(pool)) => {
                            postgres::trail::check_checkpoints(pool, &list, &key).await?
                        }
                        (None, None) => {
                            trail::check_checkpoints_in_db(&settings.db, &list, &key).await?
                        }
                    };
                    Some((list.len(), failure))
                }
                _ => None,
            };
            let checked = checkpoint_failure.as_ref().map(|(n, _)| *n);
            let checkpoint_failure = checkpoint_failure.and_then(|(_, f)| f);
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            let with_note = |mut report: serde_json::Value| {
                if let Some(note) = note {
                    report["note"] = note.into();
                }
                report
            };
            match result {
                Ok(r) if mismatches.is_empty() && checkpoint_failure.is_none() => {
                    writeln!(
                        out,
                        "{}",
                        with_note(json!({
                            "ok": true, "source": source, "events": r.events, "signatures": r.signatures,
                            "head_seq": r.head_seq, "head_hash": r.head_hash, "seconds": started.elapsed().as_secs_f64(),
                            "mismatches": mismatches, "checkpoints_checked": checked,
                        }))
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Ok(r) => {
                    let reason = match &checkpoint_failure {
                        Some((_, why)) => why.clone(),
                        None => format!("{} row(s) disagree with the trail", mismatches.len()),
                    };
                    writeln!(
                        out,
                        "{}",
                        with_note(json!({
                            "ok": false, "source": source, "events": r.events, "signatures": r.signatures,
                            "head_seq": r.head_seq, "head_hash": r.head_hash, "reason": reason,
                            "mismatches": mismatches, "checkpoints_checked": checked,
                            "checkpoint": checkpoint_failure.as_ref().map(|(c, _)| c),
                        }))
                    )?;
                    for m in &mismatches {
                        eprintln!(
                            "{} {} disagrees with the trail: {}",
                            m.subject,
                            m.id,
                            m.fields.join(", ")
                        );
                    }
                    if let Some((_, why)) = &checkpoint_failure {
                        eprintln!("audit trail FAILED the checkpoint check: {why}");
                    }
                    Ok(ExitCode::from(3))
                }
                Err(b) => {
                    writeln!(
                        out,
                        "{}",
                        with_note(
                            json!({ "ok": false, "source": source, "first_bad_seq": b.seq, "reason": b.reason, "mismatches": mismatches })
                        )
                    )?;
                    eprintln!(
                        "audit trail FAILED verification at seq {}: {}",
                        b.seq, b.reason
                    );
                    Ok(ExitCode::from(3))
                }
            }
        }
        AuditCommand::Export { format, output } => {
            let format = match format {
                CliExportFormat::Ndjson => ExportFormat::Ndjson,
                CliExportFormat::Csv => ExportFormat::Csv,
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let producer = match backend(settings)? {
                Backend::Sqlite => {
                    // Opening the store first applies any pending migration.
                    drop(open(settings).await?);
                    let db = settings.db.clone();
                    tokio::spawn(async move { trail::export(&db, format, tx).await })
                }
                // Read-only: the schema is `countersign migrate`'s to change.
                Backend::Postgres => {
                    let pool = postgres::connect_with(&settings.db, 1).await?;
                    tokio::spawn(async move { postgres::trail::export(&pool, format, tx).await })
                }
            };
            let mut sink: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
                None => Box::new(std::io::stdout().lock()),
            };
            while let Some(chunk) = rx.recv().await {
                sink.write_all(&chunk?)?;
            }
            sink.flush()?;
            producer.await??;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::PublicKey => {
            let signer = Signer::from_settings(settings)?;
            write!(out, "{}", signer.public_pem())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn trail_verify_file(
    reader: impl std::io::BufRead,
    key: ed25519_dalek::VerifyingKey,
) -> anyhow::Result<Result<crate::store::audit::Report, crate::store::audit::Break>> {
    crate::store::audit::verify_export(reader, key).map_err(|e| anyhow::anyhow!(e))
}

/// `slack:T0123/U0456` or `teams:<AAD object id>`.
pub fn parse_external(s: &str) -> Result<String, String> {
    let ok = match s.split_once(':') {
        Some(("slack", rest)) => rest
            .split_once('/')
            .is_some_and(|(t, u)| !t.is_empty() && !u.is_empty()),
        Some(("teams", rest)) => !rest.is_empty(),
        _ => false,
    };
    if ok && s.chars().all(|c| c.is_ascii_graphic()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "'{s}' must look like slack:TEAM_ID/USER_ID or teams:AAD_OBJECT_ID"
        ))
    }
}

async fn identities_command(
    settings: &Settings,
    cmd: IdentitiesCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open(settings).await?;
    let actor = cli_actor();
    match cmd {
        IdentitiesCommand::Link {
            external,
            principal,
        } => {
            let external = parse_external(&external).map_err(|e| anyhow::anyhow!(e))?;
            let principal = Principal::parse(&principal).map_err(|e| anyhow::anyhow!(e))?;
            if !principal.is_human() {
                anyhow::bail!("only user: principals can be linked to chat accounts");
            }
            let (e2, p2) = (external.clone(), principal.clone());
            store
                .write(move |ctx| {
                    Box::pin(async move {
                        identities::link(ctx, &e2, &p2).await?;
                        ctx.audit(
                            &actor,
                            None,
                            "identity.linked",
                            &json!({ "external": e2, "principal": p2 }),
                        )
                        .await?;
                        Ok(())
                    })
                })
                .await?;
            writeln!(out, "linked {external} to {principal}")?;
        }
        IdentitiesCommand::Unlink { external } => {
            let e2 = external.clone();
            store
                .write(move |ctx| {
                    Box::pin(async move {
                        if !identities::unlink(ctx, &e2).await? {
                            return Err(crate::error::AppError::NotFound(format!(
                                "{e2} is not linked"
                            )));
                        }
                        ctx.audit(
                            &actor,
                            None,
                            "identity.unlinked",
                            &json!({ "external": e2 }),
                        )
                        .await?;
                        Ok(())
                    })
                })
                .await?;
            writeln!(out, "unlinked {external}")?;
        }
        IdentitiesCommand::List => {
            for l in identities::list(&store).await? {
                writeln!(out, "{}\t{}\t{}", l.external, l.principal, l.created_at)?;
            }
        }
    }
    Ok(())
}
