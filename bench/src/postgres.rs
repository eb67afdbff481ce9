//! The PostgreSQL rows of issue 10, beside the SQLite rows of the same run:
//! b's and c's creates on a fresh PostgreSQL database with one replica and
//! with three (load spread across them as a balancer would), and click to
//! agent across replicas (created on the first, decided on the second,
//! waited for on the third, so the answer crosses LISTEN/NOTIFY).
//!
//! The database is created for the run and dropped after it. Its trail is
//! seeded with as many events as SQLite's (the library's
//! `seed_postgres`, a signed chain through `COPY`), so the appends meet
//! indexes as deep; the seed has no request rows, so the full-trail reads
//! after the creates are `audit export` and `audit verify --chain-only`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use countersign::store::audit::Signer;
use countersign::store::postgres::seed::{SeedOptions, seed_postgres};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::client::Api;
use crate::report::Row;
use crate::scenarios::{self, Ctx};
use crate::service::{Service, Setup};
use crate::slack::Clicker;

/// The server the rows are measured on unless `--postgres` says otherwise.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database of its own for this run, dropped by [`Fresh::drop_now`].
struct Fresh {
    admin: String,
    name: String,
    url: String,
}

impl Fresh {
    async fn create(admin: &str) -> anyhow::Result<Self> {
        let name = format!("countersign_bench_{}", std::process::id());
        let mut conn = PgConnection::connect(admin).await.with_context(|| {
            format!(
                "connecting to {}",
                countersign::store::postgres::redacted(admin)
            )
        })?;
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await?;
        let create = format!("CREATE DATABASE {name}");
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut conn)
            .await?;
        // The same server, the new database: replace the URL's path.
        let (base, _) = admin
            .split_once('?')
            .map(|(b, q)| (b, Some(q)))
            .unwrap_or((admin, None));
        let root = base
            .rsplit_once('/')
            .map(|(r, _)| r)
            .context("a PostgreSQL URL names a database")?;
        Ok(Self {
            admin: admin.to_string(),
            url: format!("{root}/{name}"),
            name,
        })
    }

    async fn drop_now(self) {
        if let Ok(mut conn) = PgConnection::connect(&self.admin).await {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await;
        }
    }
}

/// Whether a PostgreSQL server answers at `url`.
pub async fn answers(url: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(url)).await,
        Ok(Ok(_))
    )
}

/// The PostgreSQL rows: `p1.b`, `p1.c`, `p3.b`, `p3.c`, `p3.d`.
pub async fn rows(main: &Ctx, admin: &str, rounds: u64) -> anyhow::Result<Vec<Row>> {
    let fresh = Fresh::create(admin).await?;
    let result = measure(main, &fresh, rounds).await;
    fresh.drop_now().await;
    result
}

async fn measure(main: &Ctx, fresh: &Fresh, rounds: u64) -> anyhow::Result<Vec<Row>> {
    let dir = main
        .setup
        .policy
        .parent()
        .context("the policy file is in the work dir")?
        .to_path_buf();
    // No chat channel: these rows measure the store, as b.no-chat does.
    let setup = Setup {
        db: PathBuf::from(&fresh.url),
        env: vec![
            (
                "COUNTERSIGN_SIGNING_KEY".into(),
                dir.join("pg.audit-key.pem").display().to_string(),
            ),
            (
                "COUNTERSIGN_PERMIT_KEY".into(),
                dir.join("pg.permit-key.pem").display().to_string(),
            ),
        ],
        ..main.setup.clone()
    };
    setup.cli(&["migrate"]).await?;
    let signer = Signer::load_or_create(&dir.join("pg.audit-key.pem"))?;
    let pool = countersign::store::postgres::connect(&fresh.url).await?;
    let seeded = seed_postgres(
        &pool,
        &SeedOptions::new(main.seeded.events),
        Arc::new(signer),
    )
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    pool.close().await;
    eprintln!(
        "   seeded {} events in {:.1} s",
        seeded.events, seeded.seconds
    );
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
    let first = Service::start(&setup).await?;
    let mut ctx = Ctx {
        api: Api::new(first.addr),
        setup: setup.clone(),
        agent,
        approver,
        auditor: main.auditor.clone(),
        clicker: Clicker::Api,
        load: main.load,
        seeded: main.seeded.clone(),
        ceiling: main.ceiling,
        floors: Default::default(),
        quick: main.quick,
    };
    let mut rows = Vec::new();
    let label = |mut row: Row, id: &str, scenario: &str| {
        row.id = id.into();
        row.scenario = scenario.into();
        row.target = "(reported)".into();
        row.met = None;
        row
    };
    eprintln!("   PostgreSQL, 1 replica");
    let b = scenarios::create(&ctx, false, None).await?;
    rows.push(label(
        b,
        "p1.b",
        "PostgreSQL, 1 replica: create, approval required",
    ));
    show(&rows);
    let c = scenarios::create(&ctx, true, None).await?;
    rows.push(label(
        c,
        "p1.c",
        "PostgreSQL, 1 replica: create, allowed by policy",
    ));
    show(&rows);

    eprintln!("   PostgreSQL, 3 replicas");
    let second = Service::start(&setup).await?;
    let third = Service::start(&setup).await?;
    ctx.api = Api::across(vec![first.addr, second.addr, third.addr]);
    let b = scenarios::create(&ctx, false, None).await?;
    rows.push(label(
        b,
        "p3.b",
        "PostgreSQL, 3 replicas: create, approval required",
    ));
    show(&rows);
    let c = scenarios::create(&ctx, true, None).await?;
    rows.push(label(
        c,
        "p3.c",
        "PostgreSQL, 3 replicas: create, allowed by policy",
    ));
    show(&rows);
    let ctx = Arc::new(ctx);
    let d = scenarios::click_to_agent(
        &ctx,
        "p3.d",
        "PostgreSQL, 3 replicas: click to agent across replicas",
        1,
        rounds,
        Duration::from_secs(30),
        None,
    )
    .await?;
    let mut d = label(
        d,
        "p3.d",
        "PostgreSQL, 3 replicas: click to agent across replicas",
    );
    d.note
        .push_str("; created on replica 1, approved on replica 2, the agent waiting on replica 3");
    rows.push(d);
    show(&rows);
    for s in [first, second, third] {
        s.stop().await?;
    }
    rows.extend(full_trail_reads(&setup, &dir).await?);
    show(&rows);
    Ok(rows)
}

/// `audit verify --chain-only` and `audit export` of the whole trail
/// (the seed and what the run wrote), process start to exit.
async fn full_trail_reads(setup: &Setup, dir: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    let t = std::time::Instant::now();
    let out = setup.cli(&["audit", "verify", "--chain-only"]).await?;
    let secs = t.elapsed().as_secs_f64();
    let v: Value = serde_json::from_str(&out)?;
    if v["ok"] != true {
        bail!("the PostgreSQL trail did not verify: {out}");
    }
    let events = v["events"].as_u64().unwrap_or(0);
    let mut rows = vec![scenarios::events_row(
        "p.verify",
        "PostgreSQL: countersign audit verify --chain-only",
        events,
        secs,
        format!(
            "{events} events, {} signatures, {secs:.2} s",
            v["signatures"]
        ),
    )];
    let file = dir.join("pg-export.ndjson");
    let t = std::time::Instant::now();
    setup
        .cli(&[
            "audit",
            "export",
            "--output",
            file.to_str().context("utf-8 path")?,
        ])
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&file)?.len();
    std::fs::remove_file(&file)?;
    rows.push(scenarios::events_row(
        "p.export",
        "PostgreSQL: countersign audit export (NDJSON file)",
        events,
        secs,
        format!(
            "{events} events, {:.0} MiB, {secs:.2} s",
            size as f64 / 1048576.0
        ),
    ));
    Ok(rows)
}

fn show(rows: &[Row]) {
    crate::show(rows);
}
