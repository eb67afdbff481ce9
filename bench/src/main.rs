//! `countersign-bench`: the benchmark of issue 5 (`bash bench/run.sh`).
//!
//! Seeds a temporary database with a 1,000,000-event audit trail, starts
//! the real `countersign serve` on it in its default durability (WAL,
//! `synchronous=FULL`), and runs scenarios a–g against it on loopback with
//! the lean HTTP/1 client in `client.rs`. Throughput figures are reported
//! as ratios to a, the `/healthz` ceiling measured in the same run, because
//! absolute numbers on a shared 2-core machine mean little; the creates (b,
//! c) also as a ratio to w, the writer floor of the same rows measured in
//! the same run (`floor.rs`). Prints one table and writes the same rows as
//! JSON.
//!
//! A workspace member of its own (bench/), so its dependencies are not the
//! service's; it uses only the library's public API.

mod client;
mod floor;
mod mcp;
mod postgres;
mod report;
mod scenarios;
mod seed;
mod service;
mod slack;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use client::{Api, Load};
use report::Results;
use scenarios::Ctx;
use service::{Service, Setup};
use slack::Clicker;

#[derive(Debug, Parser)]
#[command(
    name = "countersign-bench",
    about = "Throughput, latency and memory of Countersign on this machine"
)]
struct Args {
    /// The countersign binary; default: the one next to this binary.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench/results.json")]
    out: PathBuf,
    /// Scratch directory for the database (default: a new one under the
    /// system temp dir, removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the scratch directory (database, policy, keys).
    #[arg(long)]
    keep: bool,
    /// Audit events to seed.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Connections for the throughput scenarios (a, b, c).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds measured per throughput scenario (after 1 s of warm-up).
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Concurrent long-polls for g.
    #[arg(long, default_value_t = 10_000)]
    long_polls: usize,
    /// Approve in d through the API even when Slack is available.
    #[arg(long)]
    click_via_api: bool,
    /// A short smoke run: fewer events, seconds and long-polls.
    #[arg(long)]
    quick: bool,
    /// The PostgreSQL server for the p rows (a database is created on it
    /// for the run and dropped after); the rows are skipped, with a note,
    /// when it does not answer.
    #[arg(long, env = "COUNTERSIGN_BENCH_POSTGRES_URL", default_value = postgres::DEFAULT_URL)]
    postgres: String,
    /// Skip the PostgreSQL rows.
    #[arg(long)]
    no_postgres: bool,
    /// Run only these scenarios, e.g. `--only b,c` (a always runs: it is
    /// the reference; w runs with b or c, which are reported against it).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Args {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

const POLICY: &str = r#"# The benchmark's policy: one rule per path measured.
groups:
  auditors: [user:auditor@example.com]
rules:
  - name: bench-allow
    action: bench.read
    effect: allow
  - name: bench-hook
    action: claude-code.Read
    effect: allow
  - name: bench-approve
    action: bench.approve
    effect: require_approval
    approvals: 1
    expires_in: 2h
default:
  effect: require_approval
  expires_in: 15m
"#;

fn main() -> anyhow::Result<()> {
    countersign::startup::install_crypto_provider();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        args.events = args.events.min(50_000);
        args.seconds = args.seconds.min(2);
        args.long_polls = args.long_polls.min(1_000);
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => service::sibling_binary()?,
    };
    let (work, temporary) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("countersign-bench-{}", std::process::id())),
            !args.keep,
        ),
    };
    std::fs::create_dir_all(&work)?;
    let result = bench(&args, bin, &work).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("scratch files kept in {}", work.display());
    }
    result
}

fn step(what: &str) {
    eprintln!("== {what}");
}

async fn bench(args: &Args, bin: PathBuf, work: &std::path::Path) -> anyhow::Result<()> {
    let started_at = countersign::clock::fmt(countersign::clock::now());
    let machine = report::machine();
    eprintln!(
        "countersign-bench on {} CPU(s) ({}), {:.1} GiB; work dir {}",
        machine.nproc,
        machine.cpu,
        machine.memory_gib,
        work.display()
    );
    let db = work.join("bench.db");
    for f in [
        "bench.db",
        "bench.db-wal",
        "bench.db-shm",
        "bench.db.audit-key.pem",
    ] {
        let _ = std::fs::remove_file(work.join(f));
    }
    let policy = work.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;

    step(&format!("seeding {} audit events", args.events));
    let seeded = seed::seed(&db, &work.join("bench.db.audit-key.pem"), args.events).await?;
    eprintln!(
        "   {} events, {:.0} MiB, in {:.1} s",
        seeded.events,
        seeded.bytes as f64 / 1048576.0,
        seeded.seconds
    );

    // w writes into a copy of the seeded file, so its indexes are as deep
    // as the service's and the service's own file stays what it verifies.
    let floor_db = work.join("floor.db");
    let wants_floor = args.wants("w") || args.wants("b") || args.wants("c");
    if wants_floor {
        for f in ["floor.db", "floor.db-wal", "floor.db-shm"] {
            let _ = std::fs::remove_file(work.join(f));
        }
        std::fs::copy(&db, &floor_db).context("copying the seed for w")?;
        if work.join("bench.db-wal").exists() {
            std::fs::copy(work.join("bench.db-wal"), work.join("floor.db-wal"))?;
        }
    }

    // Slack is measured when this build has the channel (its routes exist).
    let slack_api = slack::fake_web_api().await?;
    let signing_secret = "bench-signing-secret".to_string();
    let mut setup = Setup {
        bin,
        db: db.clone(),
        policy,
        env: vec![],
    };
    let slack_env = vec![
        (
            "COUNTERSIGN_SLACK_BOT_TOKEN".to_string(),
            "xoxb-bench".to_string(),
        ),
        (
            "COUNTERSIGN_SLACK_SIGNING_SECRET".to_string(),
            signing_secret.clone(),
        ),
        (
            "COUNTERSIGN_SLACK_CHANNEL".to_string(),
            slack::CHANNEL.to_string(),
        ),
        (
            "COUNTERSIGN_SLACK_API_URL".to_string(),
            format!("http://{slack_api}/api/"),
        ),
    ];
    let agent = setup
        .key(
            "agent:bench",
            Some("user:owner@example.com"),
            "request,read",
        )
        .await?;
    let approver = setup
        .key("user:approver@example.com", None, "decide,read")
        .await?;
    let auditor = setup.key("user:auditor@example.com", None, "audit").await?;
    let slack_ready = !args.click_via_api && has_slack(&setup).await;
    let clicker = if slack_ready {
        setup.env = slack_env;
        setup
            .cli(&[
                "identities",
                "link",
                &format!("slack:{}/{}", slack::TEAM, slack::USER),
                "user:approver@example.com",
            ])
            .await?;
        Clicker::Slack { signing_secret }
    } else {
        Clicker::Api
    };
    eprintln!("   d clicks through {}", clicker.name());

    step("starting the service");
    let service = Service::start(&setup).await?;
    eprintln!("   pid {} on {}", service.pid, service.addr);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = service.rss()?;

    let mut ctx = Ctx {
        api: Api::new(service.addr),
        setup,
        agent,
        approver,
        auditor,
        clicker,
        load: Load {
            connections: args.connections,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(args.seconds),
        },
        seeded,
        ceiling: 0.0,
        floors: Default::default(),
        quick: args.quick,
    };
    let mut rows = vec![];
    let t = Instant::now();

    step("a. ceiling: GET /healthz");
    rows.push(scenarios::ceiling(&mut ctx, "a").await?);
    show(&rows);
    let rounds = if args.quick { 50 } else { 300 };
    if args.wants("d") {
        // Low load is measured on a service with nothing else to do: after
        // b and c the machine is still writing their data back to disk for
        // a while, which every commit's fsync waits behind. The same
        // measurement after b and c is reported as d.low.after.
        step("d. click to agent, low load");
        let shared = Arc::new(ctx);
        rows.push(
            scenarios::click_to_agent(
                &shared,
                "d.low",
                "click to agent, low load (1 agent)",
                1,
                rounds,
                Duration::from_secs(30),
                Some(5.0),
            )
            .await?,
        );
        ctx = Arc::try_unwrap(shared)
            .map_err(|_| anyhow::anyhow!("d.low still holds the bench context"))?;
        show(&rows);
    }
    if wants_floor {
        // Before b and c, which are reported as a ratio to it; the service
        // is idle meanwhile.
        step("w. the writer floor (b's and c's rows, one thread, no HTTP)");
        let key = work.join("bench.db.audit-key.pem");
        for row in scenarios::writer_floor(&mut ctx, &floor_db, &key).await? {
            rows.push(row);
            show(&rows);
        }
        for f in ["floor.db", "floor.db-wal", "floor.db-shm"] {
            let _ = std::fs::remove_file(work.join(f));
        }
    }
    if args.wants("b") && matches!(ctx.clicker, Clicker::Slack { .. }) {
        // The same path with no chat channel: no outbox rows, and no
        // deliveries competing for the writer. A second process on the
        // same file; the main one is idle meanwhile.
        step("b without a chat channel");
        let plain = Service::start(&Setup {
            env: vec![],
            ..ctx.setup.clone()
        })
        .await?;
        let main_api = std::mem::replace(&mut ctx.api, Api::new(plain.addr));
        let mut row = scenarios::create(&ctx, false, ctx.floors.b_no_chat).await?;
        ctx.api = main_api;
        plain.stop().await?;
        row.id = "b.no-chat".into();
        row.scenario = "create, approval required, no chat channel".into();
        rows.push(row);
        show(&rows);
    }
    if args.wants("b") {
        step("b. create, approval required");
        rows.push(scenarios::create(&ctx, false, ctx.floors.b).await?);
        show(&rows);
    }
    if args.wants("c") {
        step("c. create, allowed by policy");
        rows.push(scenarios::create(&ctx, true, ctx.floors.c).await?);
        show(&rows);
    }
    if args.wants("c") || args.wants("c.mcp") {
        step("c.mcp MCP request_approval, allowed by policy");
        rows.push(mcp::request_approval_allowed(&ctx).await?);
        show(&rows);
    }

    let (backlog, drained) = scenarios::settle(&ctx).await?;
    if backlog > 0 {
        eprintln!(
            "   the outbox delivered a backlog of {backlog} in {:.1} s",
            drained.as_secs_f64()
        );
        if let Some(b) = rows.iter_mut().find(|r| r.id == "b") {
            b.note.push_str(&format!(
                "; the outbox then delivered the {backlog} queued Slack posts in {:.1} s",
                drained.as_secs_f64()
            ));
        }
    }

    let ctx = Arc::new(ctx);
    if args.wants("d") {
        step("d. click to agent, after b and c, and at high load");
        rows.push(
            scenarios::click_to_agent(
                &ctx,
                "d.low.after",
                "click to agent, 1 agent, right after b and c",
                1,
                rounds,
                Duration::from_secs(30),
                None,
            )
            .await?,
        );
        show(&rows);
        rows.push(
            scenarios::click_to_agent(
                &ctx,
                "d.high",
                "click to agent, high load (64 agents)",
                64,
                u64::MAX,
                Duration::from_secs(args.seconds),
                None,
            )
            .await?,
        );
        show(&rows);
    }

    // d's requests were posted to Slack too; start e on a quiet service.
    scenarios::settle(&ctx).await?;
    if args.wants("e") {
        step("e. audit queries");
        rows.extend(scenarios::audit_queries(&ctx).await?);
        show(&rows);
    }

    if args.wants("f") {
        step("f. audit verify and export");
        rows.extend(scenarios::verify_and_export(&ctx, work).await?);
        show(&rows);
    }

    if args.wants("h") {
        step("h. the Claude Code hook, allowed");
        let runs = if args.quick { 50 } else { 500 };
        rows.push(scenarios::hook_allowed(&ctx, runs).await?);
        show(&rows);
    }

    if args.wants("p") && !args.no_postgres {
        step("p. PostgreSQL: create with 1 and 3 replicas, click to agent across replicas");
        if postgres::answers(&args.postgres).await {
            rows.extend(postgres::rows(&ctx, &args.postgres, rounds).await?);
        } else {
            eprintln!(
                "   skipped: no PostgreSQL answers at {} (--postgres URL)",
                countersign::store::postgres::redacted(&args.postgres)
            );
        }
    }

    if args.wants("g") {
        step("g. memory");
        rows.push(scenarios::memory_row(
            "g.idle",
            "RSS idle (after start, before load)",
            idle,
            30.0,
            format!("VmRSS of pid {} one second after it listened", service.pid),
        ));
        // HTTP/2 first: what it frees is small, so the allocator's leftovers
        // barely flatter the HTTP/1 row after it (the other order would
        // hand g.h2 the pages 10,000 connections gave back).
        for over in [scenarios::Transport::Http2, scenarios::Transport::Http1] {
            rows.push(scenarios::long_polls(&ctx, &service, args.long_polls, over).await?);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = service.rss()?;
        rows.push(scenarios::memory_row(
            "g.after",
            "RSS idle after all scenarios",
            after,
            f64::INFINITY,
            "for information: what the allocator kept".into(),
        ));
        rows.last_mut().expect("just pushed").met = None;
        rows.last_mut().expect("just pushed").target = "(reported)".into();
        show(&rows);
    }

    let mut ctx = Arc::try_unwrap(ctx)
        .map_err(|_| anyhow::anyhow!("scenario tasks still hold the context"))?;
    step("a again: has the machine's ceiling drifted?");
    rows.push(scenarios::ceiling(&mut ctx, "a.end").await?);
    service.stop().await?;
    let elapsed = t.elapsed();

    let table = report::table(&rows);
    println!("\n{table}");
    for r in &rows {
        println!("- {}: {}", r.id, r.note);
    }
    let results = Results {
        started_at,
        machine,
        settings: json!({
            "events": ctx.seeded.events,
            "connections": args.connections,
            "seconds": args.seconds,
            "long_polls": args.long_polls,
            "clicks_via": ctx.clicker.name(),
            "durability": "SQLite WAL, synchronous=FULL (the service's default)",
            "scenario_seconds": elapsed.as_secs_f64(),
        }),
        rows,
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("results written to {}", args.out.display());
    Ok(())
}

pub(crate) fn show(rows: &[report::Row]) {
    if let Some(r) = rows.last() {
        eprintln!(
            "{}",
            report::table(std::slice::from_ref(r))
                .lines()
                .nth(2)
                .unwrap_or("")
        );
    }
}

/// Whether this build of the service has the Slack channel: its interaction
/// route answers something other than 404 when Slack is configured.
async fn has_slack(setup: &Setup) -> bool {
    let probe = Setup {
        env: vec![
            ("COUNTERSIGN_SLACK_BOT_TOKEN".into(), "xoxb-probe".into()),
            ("COUNTERSIGN_SLACK_SIGNING_SECRET".into(), "probe".into()),
            ("COUNTERSIGN_SLACK_CHANNEL".into(), "CPROBE".into()),
            (
                "COUNTERSIGN_SLACK_API_URL".into(),
                "http://127.0.0.1:9/api/".into(),
            ),
        ],
        ..setup.clone()
    };
    let Ok(service) = Service::start(&probe).await else {
        return false;
    };
    let api = Api::new(service.addr);
    let found = match client::Conn::open(service.addr).await {
        Ok(mut c) => c
            .send(api.post_form("/slack/interactions", &[], "payload=%7B%7D".into()))
            .await
            .map(|(s, _)| s != hyper::StatusCode::NOT_FOUND)
            .unwrap_or(false),
        Err(_) => false,
    };
    let _ = service.stop().await;
    found
}
