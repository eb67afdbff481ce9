//! Scenarios a–g of issue 5. Each returns report rows; throughput rows are
//! divided by the ceiling (a) measured in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use hyper::StatusCode;
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::{Api, Conn, H2Conn, Load, Outcome, closed_loop, histogram};
use crate::floor::Mix;
use crate::report::Row;
use crate::seed::Seeded;
use crate::service::{Service, Setup};
use crate::slack::Clicker;

/// Everything the scenarios share.
pub struct Ctx {
    pub api: Api,
    pub setup: Setup,
    pub agent: String,
    pub approver: String,
    pub auditor: String,
    pub clicker: Clicker,
    pub load: Load,
    pub seeded: Seeded,
    /// Throughput of a, once measured.
    pub ceiling: f64,
    /// The writer floors (w), once measured: creates/s of b's rows without
    /// and with the chat post's outbox row, and of c's.
    pub floors: Floors,
    pub quick: bool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Floors {
    pub b_no_chat: Option<f64>,
    pub b: Option<f64>,
    pub c: Option<f64>,
}

fn ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

fn note(o: &Outcome, conns: usize) -> String {
    let mut s = format!(
        "{} requests in {:.1} s on {conns} connections, {} errors",
        o.requests,
        o.elapsed.as_secs_f64(),
        o.errors
    );
    if let Some(e) = &o.first_error {
        s.push_str(&format!(
            " (first: {})",
            e.chars().take(160).collect::<String>()
        ));
    }
    s
}

pub fn throughput_row(
    ctx: &Ctx,
    id: &str,
    scenario: &str,
    o: &Outcome,
    conns: usize,
    target: &str,
    met: Option<bool>,
) -> Row {
    Row {
        id: id.into(),
        scenario: scenario.into(),
        value: o.throughput(),
        unit: "req/s",
        p50_ms: ms(&o.latency, 0.50),
        p99_ms: ms(&o.latency, 0.99),
        ratio: (ctx.ceiling > 0.0).then(|| o.throughput() / ctx.ceiling),
        to_floor: None,
        target: target.into(),
        met,
        note: note(o, conns),
    }
}

/// a. The HTTP ceiling of this machine, this run: `GET /healthz`.
pub async fn ceiling(ctx: &mut Ctx, id: &str) -> anyhow::Result<Row> {
    let api = ctx.api.clone();
    let o = closed_loop(
        &ctx.api,
        ctx.load,
        StatusCode::OK,
        Arc::new(move |_, _| api.get("/healthz", None)),
    )
    .await?;
    if ctx.ceiling == 0.0 {
        ctx.ceiling = o.throughput();
    }
    let mut row = throughput_row(
        ctx,
        id,
        "ceiling: GET /healthz",
        &o,
        ctx.load.connections,
        "the reference",
        None,
    );
    if id != "a" {
        row.scenario = "ceiling again, at the end (drift check)".into();
    }
    Ok(row)
}

fn create_body(action: &str, n: u64) -> String {
    json!({
        "action": action,
        "resource": format!("bench/resource-{}", n % 1000),
        "summary": format!("Benchmark request {n}"),
        "justification": "load test",
        "details": { "n": n, "table": "customers", "rows": 1200 },
        "risk": "medium",
        "on_behalf_of": "user:owner@example.com",
    })
    .to_string()
}

/// b and c: `POST /v1/approvals` at full concurrency. `floor` is the
/// creates/s of the same rows in w, the writer floor (issue 12's targets:
/// b ≥ 75% of its floor and ≥ 20% of a, p99 ≤ 10 ms; c ≥ 75% of its floor
/// and ≥ 30% of a, p99 ≤ 5 ms).
pub async fn create(ctx: &Ctx, allow: bool, floor: Option<f64>) -> anyhow::Result<Row> {
    let (id, action, scenario) = if allow {
        ("c", "bench.read", "create, allowed by policy")
    } else if ctx.clicker.is_slack() {
        (
            "b",
            "bench.approve",
            "create, approval required (+ Slack post in the outbox)",
        )
    } else {
        ("b", "bench.approve", "create, approval required")
    };
    let api = ctx.api.clone();
    let token = ctx.agent.clone();
    let counter = Arc::new(AtomicU64::new(0));
    let o = closed_loop(
        &ctx.api,
        ctx.load,
        StatusCode::CREATED,
        Arc::new(move |_, _| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            api.post_json("/v1/approvals", &token, create_body(action, n))
        }),
    )
    .await?;
    let ratio = o.throughput() / ctx.ceiling;
    let to_floor = floor.map(|f| o.throughput() / f);
    let p99 = ms(&o.latency, 0.99).unwrap_or(f64::INFINITY);
    let (of_a, max_p99) = if allow { (0.30, 5.0) } else { (0.20, 10.0) };
    let target = format!(
        "≥ 75% of w, ≥ {:.0}% of a, p99 ≤ {max_p99:.0} ms",
        of_a * 100.0
    );
    // Without a floor measured in this run, the floor target is unknown.
    let met = to_floor.map(|f| f >= 0.75 && ratio >= of_a && p99 <= max_p99);
    let mut row = throughput_row(ctx, id, scenario, &o, ctx.load.connections, &target, None);
    row.to_floor = to_floor;
    row.met = met.map(|m| m && o.errors == 0);
    Ok(row)
}

/// w. The writer floor (floor.rs) of b without and with the chat post, and
/// of c, on `db` (a copy of the seeded database), one mix after another;
/// records the floors in `ctx` for b's and c's rows.
pub async fn writer_floor(
    ctx: &mut Ctx,
    db: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Vec<Row>> {
    let signer = Arc::new(countersign::store::audit::Signer::load_or_create(key)?);
    let mut mixes = vec![(
        "w.b.no-chat",
        "writer floor, b's rows (no chat)",
        Mix::Approval { chat: false },
    )];
    if ctx.clicker.is_slack() {
        mixes.push((
            "w.b",
            "writer floor, b's rows (+ outbox row)",
            Mix::Approval { chat: true },
        ));
    }
    mixes.push(("w.c", "writer floor, c's rows", Mix::Allowed));
    let mut rows = vec![];
    for (id, scenario, mix) in mixes {
        let (db, signer) = (db.to_path_buf(), signer.clone());
        let (warmup, duration) = (ctx.load.warmup, ctx.load.duration);
        let f = tokio::task::spawn_blocking(move || {
            crate::floor::run(&db, &signer, mix, warmup, duration)
        })
        .await??;
        let rate = f.per_second();
        match mix {
            Mix::Approval { chat: false } => {
                ctx.floors.b_no_chat = Some(rate);
                // Without Slack, b is b.no-chat.
                if !ctx.clicker.is_slack() {
                    ctx.floors.b = Some(rate);
                }
            }
            Mix::Approval { chat: true } => ctx.floors.b = Some(rate),
            Mix::Allowed => ctx.floors.c = Some(rate),
        }
        rows.push(Row {
            id: id.into(),
            scenario: scenario.into(),
            value: rate,
            unit: "creates/s",
            p50_ms: f.batch_ms(0.50),
            p99_ms: f.batch_ms(0.99),
            ratio: (ctx.ceiling > 0.0).then(|| rate / ctx.ceiling),
            to_floor: None,
            target: "(the reference of b, c)".into(),
            met: None,
            note: format!(
                "{} creates in {:.1} s, {} per transaction, one thread; {} audit events and {} outbox row(s) per create, \
                 {:.1} µs per create; p50/p99 are of a whole batch (BEGIN IMMEDIATE to COMMIT)",
                f.creates,
                f.elapsed.as_secs_f64(),
                crate::floor::BATCH,
                mix.events(),
                mix.outbox_rows(),
                1e6 / rate,
            ),
        });
    }
    Ok(rows)
}

/// Creates one pending request; returns its id and payload hash.
async fn create_pending(ctx: &Ctx, conn: &mut Conn, n: u64) -> anyhow::Result<(Uuid, String)> {
    let body = conn
        .expect(
            ctx.api
                .post_json("/v1/approvals", &ctx.agent, create_body("bench.approve", n)),
            StatusCode::CREATED,
        )
        .await?;
    let v: Value = serde_json::from_slice(&body)?;
    let id = v["id"].as_str().context("a created request has an id")?;
    let hash = v["payload_sha256"]
        .as_str()
        .context("a created request has a payload hash")?;
    Ok((id.parse()?, hash.to_string()))
}

/// d. Click to agent: an agent long-polls a pending request; a person
/// approves it; measured from sending the approval to the agent's answer.
/// `flows` agents do this at once, for `rounds` requests each or until
/// `until`.
pub async fn click_to_agent(
    ctx: &Arc<Ctx>,
    id: &str,
    scenario: &str,
    flows: usize,
    rounds: u64,
    until: Duration,
    target: Option<f64>,
) -> anyhow::Result<Row> {
    let started = Instant::now();
    let deadline = started + until;
    let mut tasks = Vec::new();
    for f in 0..flows {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            // With several replicas: created on the first, waited for on
            // the third, decided on the second, so the answer has to
            // cross replicas (LISTEN/NOTIFY); with one, all on the same.
            let mut ctl = Conn::open(ctx.api.replica(0)).await?;
            let mut waiter = Conn::open(ctx.api.replica(2)).await?;
            let mut clicks = Conn::open(ctx.api.replica(1)).await?;
            let mut done = 0u64;
            while done < rounds && Instant::now() < deadline {
                let (rid, shown) = create_pending(&ctx, &mut ctl, (f as u64) << 32 | done).await?;
                let wait_req = ctx
                    .api
                    .get(&format!("/v1/approvals/{rid}?wait=30"), Some(&ctx.agent));
                let wait = async {
                    let r = waiter.send(wait_req).await;
                    (r, Instant::now())
                };
                let click = async {
                    // Let the agent's long-poll reach the server and park.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let req = ctx.clicker.approve(&ctx, rid, &shown);
                    let t0 = Instant::now();
                    let r = clicks.send(req).await;
                    (r, t0)
                };
                let ((answer, t1), (clicked, t0)) = tokio::join!(wait, click);
                let (status, body) = clicked?;
                if !ctx.clicker.accepted(status) {
                    bail!(
                        "the click was refused: {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                let (status, body) = answer?;
                let v: Value = serde_json::from_slice(&body)?;
                if status != StatusCode::OK || v["status"] != "approved" {
                    bail!("the agent heard {status}: {v}");
                }
                hist.saturating_record(t1.saturating_duration_since(t0).as_micros() as u64);
                done += 1;
            }
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let mut hist = histogram();
    for t in tasks {
        hist.add(&t.await??).expect("same bounds");
    }
    let elapsed = started.elapsed();
    let p99 = ms(&hist, 0.99);
    Ok(Row {
        id: id.into(),
        scenario: scenario.into(),
        value: hist.len() as f64 / elapsed.as_secs_f64(),
        unit: "clicks/s",
        p50_ms: ms(&hist, 0.50),
        p99_ms: p99,
        ratio: None,
        to_floor: None,
        target: target
            .map(|t| format!("p99 ≤ {t} ms"))
            .unwrap_or_else(|| "(reported)".into()),
        met: target.map(|t| p99.is_some_and(|p| p <= t)),
        note: format!(
            "{} clicks by {} through {}; {flows} agent(s) at once, each waiting 20 ms before the click",
            hist.len(),
            ctx.clicker.name(),
            ctx.clicker.path()
        ),
    })
}

/// e. `GET /v1/audit` with each filter `/audit` uses, on the seeded trail.
pub async fn audit_queries(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let conns = 8;
    let load = Load {
        connections: conns,
        warmup: Duration::from_millis(500),
        duration: if ctx.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3)
        },
    };
    type Pick = Arc<dyn Fn(&mut rand::rngs::ThreadRng) -> String + Send + Sync>;
    let ids = Arc::new(ctx.seeded.request_ids.clone());
    let people = Arc::new(ctx.seeded.people.clone());
    let filters: Vec<(&str, &str, Pick)> = vec![
        ("e.request", "audit ?request=ID (a timeline)", {
            let ids = ids.clone();
            Arc::new(move |r| format!("request={}", ids[r.gen_range(0..ids.len())]))
        }),
        ("e.actor", "audit ?actor=PERSON", {
            let people = people.clone();
            Arc::new(move |r| format!("actor={}", people[r.gen_range(0..people.len())]))
        }),
        (
            "e.action",
            "audit ?action=db.* (glob)",
            Arc::new(|_| "action=db.*".into()),
        ),
        (
            "e.kind",
            "audit ?kind=decision.deny",
            Arc::new(|_| "kind=decision.deny".into()),
        ),
        (
            "e.kind.",
            "audit ?kind=decision. (prefix)",
            Arc::new(|_| "kind=decision.".into()),
        ),
        (
            "e.since",
            "audit ?since=24h",
            Arc::new(|_| "since=24h".into()),
        ),
    ];
    let mut rows = vec![];
    for (id, scenario, pick) in filters {
        let api = ctx.api.clone();
        let token = ctx.auditor.clone();
        // Every answer must be a full page: a filter that matched nothing
        // would measure nothing.
        let probe = pick(&mut rand::thread_rng());
        let body = Conn::open(ctx.api.addr)
            .await?
            .expect(
                api.get(&format!("/v1/audit?{probe}"), Some(&token)),
                StatusCode::OK,
            )
            .await?;
        let page: Value = serde_json::from_slice(&body)?;
        let found = page["events"].as_array().map(Vec::len).unwrap_or(0);
        let o = closed_loop(
            &ctx.api,
            load,
            StatusCode::OK,
            Arc::new(move |_, _| {
                let q = pick(&mut rand::thread_rng());
                api.get(&format!("/v1/audit?{q}"), Some(&token))
            }),
        )
        .await?;
        let p99 = ms(&o.latency, 0.99);
        let mut row = throughput_row(
            ctx,
            id,
            scenario,
            &o,
            conns,
            "p99 ≤ 20 ms",
            Some(p99.is_some_and(|p| p <= 20.0) && o.errors == 0),
        );
        row.ratio = None;
        row.note = format!("{}; a probe returned {found} events", row.note);
        rows.push(row);
    }
    Ok(rows)
}

pub fn events_row(id: &str, scenario: &str, events: u64, secs: f64, note: String) -> Row {
    let rate = events as f64 / secs;
    Row {
        id: id.into(),
        scenario: scenario.into(),
        value: rate,
        unit: "events/s",
        p50_ms: None,
        p99_ms: None,
        ratio: None,
        to_floor: None,
        target: "≥ 300000 events/s".into(),
        met: Some(rate >= 300_000.0),
        note,
    }
}

/// f. `audit verify` and `audit export` of the whole trail, timed end to
/// end (process start included), and the HTTP export.
pub async fn verify_and_export(ctx: &Ctx, work: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    let t = Instant::now();
    let out = ctx.setup.cli(&["audit", "verify"]).await?;
    let secs = t.elapsed().as_secs_f64();
    let v: Value = serde_json::from_str(&out)?;
    if v["ok"] != true {
        bail!("the trail did not verify: {out}");
    }
    let events = v["events"].as_u64().unwrap_or(0);
    rows.push(events_row(
        "f.verify",
        "countersign audit verify (database)",
        events,
        secs,
        format!(
            "{events} events, {} signatures, {secs:.2} s",
            v["signatures"]
        ),
    ));

    let file = work.join("export.ndjson");
    let t = Instant::now();
    ctx.setup
        .cli(&[
            "audit",
            "export",
            "--output",
            file.to_str().context("utf-8 path")?,
        ])
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&file)?.len();
    rows.push(events_row(
        "f.export",
        "countersign audit export (NDJSON file)",
        events,
        secs,
        format!(
            "{events} events, {:.0} MiB, {secs:.2} s",
            size as f64 / 1048576.0
        ),
    ));

    let key = work.join("audit-public.pem");
    std::fs::write(&key, ctx.setup.cli(&["audit", "public-key"]).await?)?;
    let t = Instant::now();
    let out = ctx
        .setup
        .cli(&[
            "audit",
            "verify",
            "--file",
            file.to_str().context("utf-8 path")?,
            "--public-key",
            key.to_str().context("utf-8 path")?,
        ])
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let v: Value = serde_json::from_str(&out)?;
    if v["ok"] != true {
        bail!("the export did not verify: {out}");
    }
    rows.push(events_row(
        "f.verify-file",
        "countersign audit verify --file (offline)",
        v["events"].as_u64().unwrap_or(0),
        secs,
        format!("{secs:.2} s"),
    ));
    std::fs::remove_file(&file)?;

    // The HTTP export, read as fast as the client can.
    let t = Instant::now();
    let mut conn = Conn::open(ctx.api.addr).await?;
    let body = conn
        .expect(
            ctx.api
                .get("/v1/audit/export?format=ndjson", Some(&ctx.auditor)),
            StatusCode::OK,
        )
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let lines = body.iter().filter(|b| **b == b'\n').count() as u64;
    rows.push(events_row(
        "f.export-http",
        "GET /v1/audit/export?format=ndjson",
        lines,
        secs,
        format!(
            "{lines} events, {:.0} MiB, {secs:.2} s",
            body.len() as f64 / 1048576.0
        ),
    ));
    Ok(rows)
}

pub fn memory_row(id: &str, scenario: &str, bytes: u64, limit_mib: f64, note: String) -> Row {
    let mib = bytes as f64 / 1048576.0;
    Row {
        id: id.into(),
        scenario: scenario.into(),
        value: bytes as f64,
        unit: "bytes",
        p50_ms: None,
        p99_ms: None,
        ratio: None,
        to_floor: None,
        target: format!("≤ {limit_mib:.0} MiB"),
        met: Some(mib <= limit_mib),
        note,
    }
}

/// One gauge from `GET /metrics`.
async fn gauge(ctx: &Ctx, conn: &mut Conn, name: &str) -> anyhow::Result<u64> {
    let body = conn
        .expect(ctx.api.get("/metrics", None), StatusCode::OK)
        .await?;
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

async fn waiting(ctx: &Ctx, conn: &mut Conn) -> anyhow::Result<u64> {
    gauge(ctx, conn, "countersign_long_polls_waiting").await
}

/// Waits until the outbox has delivered everything queued (the Slack
/// posts of b's requests) and the WAL is checkpointed, so the next
/// scenario starts on a quiet service. Returns what was waiting and how long it took.
pub async fn settle(ctx: &Ctx) -> anyhow::Result<(u64, Duration)> {
    let mut conn = Conn::open(ctx.api.addr).await?;
    let t = Instant::now();
    let first = gauge(ctx, &mut conn, "countersign_outbox_backlog").await?;
    let mut left = first;
    while left > 0 && t.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = gauge(ctx, &mut conn, "countersign_outbox_backlog").await?;
    }
    // Then until the service's checkpointer has copied the WAL that the
    // heavy scenarios wrote back into the database: until then its I/O
    // competes with every commit's fsync, which is not low load.
    while gauge(ctx, &mut conn, "countersign_wal_frames_pending").await? > 0
        && t.elapsed() < Duration::from_secs(180)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok((first, t.elapsed()))
}

/// g. RSS with `n` agents long-polling pending requests at once, then all
/// of them approved and answered.
pub async fn long_polls(
    ctx: &Arc<Ctx>,
    service: &Service,
    n: usize,
    over: Transport,
) -> anyhow::Result<Row> {
    // The pending requests, made at full speed.
    let per = n.div_ceil(64);
    let mut makers = vec![];
    for m in 0..64 {
        let ctx = ctx.clone();
        makers.push(tokio::spawn(async move {
            let mut conn = Conn::open(ctx.api.addr).await?;
            let mut ids = vec![];
            for i in 0..per {
                let (id, _) =
                    create_pending(&ctx, &mut conn, (1 << 40) + (m * per + i) as u64).await?;
                ids.push(id);
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut ids = vec![];
    for m in makers {
        ids.extend(m.await??);
    }
    ids.truncate(n);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = service.rss()?;

    // HTTP/1: n connections, each long-polling one request; a few hundred
    // connect at a time so the listen backlog never overflows. HTTP/2: as
    // few connections as the server's stream limit allows, each holding
    // that many waits as streams.
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut shared = Vec::new();
    if over == Transport::Http2 {
        for _ in 0..n.div_ceil(H2_STREAMS) {
            shared.push(H2Conn::open(ctx.api.addr).await?);
        }
    }
    let mut waiters = Vec::with_capacity(n);
    for (i, id) in ids.iter().enumerate() {
        let ctx = ctx.clone();
        let gate = gate.clone();
        let id = *id;
        let h2 = (!shared.is_empty()).then(|| shared[i % shared.len()].clone());
        waiters.push(tokio::spawn(async move {
            let poll = ctx
                .api
                .get(&format!("/v1/approvals/{id}?wait=60"), Some(&ctx.agent));
            let (status, body) = match h2 {
                Some(conn) => conn.send(poll).await?,
                None => {
                    let permit = gate.acquire_owned().await?;
                    let mut conn = Conn::open(ctx.api.addr).await?;
                    drop(permit);
                    conn.send(poll).await?
                }
            };
            let v: Value = serde_json::from_slice(&body)?;
            Ok::<_, anyhow::Error>(status == StatusCode::OK && v["status"] == "approved")
        }));
    }
    let mut probe = Conn::open(ctx.api.addr).await?;
    let t = Instant::now();
    let mut parked = 0;
    while t.elapsed() < Duration::from_secs(60) {
        parked = waiting(ctx, &mut probe).await?;
        if parked >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = service.rss()?;
    let parked_after = t.elapsed();

    // Approve them all; every waiter must hear "approved".
    let t = Instant::now();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let mut deciders = vec![];
    for _ in 0..64 {
        let (ctx, ids, next) = (ctx.clone(), ids.clone(), next.clone());
        deciders.push(tokio::spawn(async move {
            let mut conn = Conn::open(ctx.api.addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(i) else { break };
                conn.expect(
                    ctx.api.post_json(
                        &format!("/v1/approvals/{id}/decisions"),
                        &ctx.approver,
                        r#"{"verdict":"approve"}"#,
                    ),
                    StatusCode::OK,
                )
                .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for d in deciders {
        d.await??;
    }
    let mut answered = 0;
    for w in waiters {
        if tokio::time::timeout(Duration::from_secs(70), w).await??? {
            answered += 1;
        }
    }
    let released = t.elapsed();
    let delta = during.saturating_sub(before);
    let (id, scenario) = match over {
        Transport::Http1 => ("g.10k", format!("RSS added by {n} concurrent long-polls")),
        Transport::Http2 => (
            "g.h2",
            format!(
                "RSS added by {n} long-polls as streams of {} HTTP/2 connections",
                shared.len()
            ),
        ),
    };
    Ok(memory_row(
        id,
        &scenario,
        delta,
        100.0,
        format!(
            "{:.1} MiB before, {:.1} MiB with {parked} parked ({:.1} s to park), {:.1} KiB per waiter; \
             all approved and {answered}/{n} answered 'approved' in {:.1} s",
            before as f64 / 1048576.0,
            during as f64 / 1048576.0,
            parked_after.as_secs_f64(),
            delta as f64 / 1024.0 / n as f64,
            released.as_secs_f64()
        ),
    ))
}

/// How g's agents hold their waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One HTTP/1.1 connection per wait.
    Http1,
    /// Streams of shared HTTP/2 connections, [`H2_STREAMS`] to each.
    Http2,
}

/// The streams the service lets one HTTP/2 connection have open
/// (`countersign::startup::MAX_STREAMS`).
const H2_STREAMS: usize = countersign::startup::MAX_STREAMS as usize;

/// h. `countersign hook claude-code` on the allowed path, timed as Claude
/// Code pays for it: a whole process per tool call (start, read stdin, one
/// request to the service, print the answer, exit), one after another.
pub async fn hook_allowed(ctx: &Ctx, runs: usize) -> anyhow::Result<Row> {
    use tokio::io::AsyncWriteExt;
    let input = json!({
        "session_id": "bench", "cwd": "/home/bench/project", "hook_event_name": "PreToolUse",
        "tool_name": "Read", "tool_input": { "file_path": "src/main.rs" },
    })
    .to_string();
    let mut h = histogram();
    let started = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        let mut child = tokio::process::Command::new(&ctx.setup.bin)
            .args(["hook", "claude-code"])
            .env_clear()
            .env("COUNTERSIGN_URL", format!("http://{}", ctx.api.addr))
            .env("COUNTERSIGN_TOKEN", &ctx.agent)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(input.as_bytes()).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        let micros = t.elapsed().as_micros() as u64;
        if !String::from_utf8_lossy(&out.stdout).contains("\"permissionDecision\":\"allow\"") {
            bail!(
                "the hook did not allow: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        h.record(micros.max(1))?;
    }
    let secs = started.elapsed().as_secs_f64();
    let p50 = ms(&h, 0.5);
    Ok(Row {
        id: "h.hook".into(),
        scenario: "countersign hook claude-code, allowed (whole process)".into(),
        value: runs as f64 / secs,
        unit: "runs/s",
        p50_ms: p50,
        p99_ms: ms(&h, 0.99),
        ratio: None,
        to_floor: None,
        target: "p50 ≤ 10 ms".into(),
        met: p50.map(|p| p <= 10.0),
        note: format!("{runs} sequential runs, each a new process"),
    })
}
