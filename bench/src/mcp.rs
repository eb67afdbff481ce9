//! c.mcp: MCP `request_approval` on the allowed path, the same policy
//! rule as c, through `POST /mcp` (streamable HTTP, one MCP session per
//! connection, the answer an SSE stream as rmcp serves it). Compared with c,
//! the plain API, it shows what the JSON-RPC envelope, the session and the
//! SSE framing cost.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use crate::client::{Body, Conn, closed_loop};
use crate::report::Row;
use crate::scenarios::{Ctx, throughput_row};

const PROTOCOL: &str = "2025-06-18";

fn post(host: &str, token: &str, session: Option<&str>, body: String) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL);
    if let Some(s) = session {
        b = b.header("mcp-session-id", s);
    }
    b.body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

/// Opens one MCP session (initialize, then initialized) and returns its id.
async fn session(ctx: &Ctx) -> anyhow::Result<String> {
    let mut conn = Conn::open(ctx.api.addr).await?;
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": { "protocolVersion": PROTOCOL, "capabilities": {},
                    "clientInfo": { "name": "countersign-bench", "version": "1" } }
    });
    let (status, headers, _) = conn
        .send_with_headers(post(
            &ctx.api.addr.to_string(),
            &ctx.agent,
            None,
            init.to_string(),
        ))
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "MCP initialize answered {status}");
    let id = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .context("MCP initialize answered without a session id")?
        .to_string();
    let done = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let (status, _, _) = conn
        .send_with_headers(post(
            &ctx.api.addr.to_string(),
            &ctx.agent,
            Some(&id),
            done.to_string(),
        ))
        .await?;
    anyhow::ensure!(status.is_success(), "MCP initialized answered {status}");
    Ok(id)
}

fn call(n: u64) -> String {
    json!({
        "jsonrpc": "2.0", "id": n + 1, "method": "tools/call",
        "params": { "name": "request_approval", "arguments": {
            "action": "bench.read",
            "resource": format!("bench/resource-{}", n % 1000),
            "summary": format!("Benchmark request {n}"),
            "justification": "load test",
            "details": { "n": n, "table": "customers", "rows": 1200 },
            "risk": "medium",
            "on_behalf_of": "user:owner@example.com",
            "wait_seconds": 0,
        } }
    })
    .to_string()
}

pub async fn request_approval_allowed(ctx: &Ctx) -> anyhow::Result<Row> {
    let mut sessions = Vec::with_capacity(ctx.load.connections);
    for _ in 0..ctx.load.connections {
        sessions.push(session(ctx).await?);
    }
    // One call first: the tool must answer approved, or the row means nothing.
    let mut conn = Conn::open(ctx.api.addr).await?;
    let (_, _, body) = conn
        .send_with_headers(post(
            &ctx.api.addr.to_string(),
            &ctx.agent,
            Some(&sessions[0]),
            call(1_000_000_000),
        ))
        .await?;
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(
        text.contains(r#""status":"approved""#),
        "MCP request_approval did not answer approved: {text}"
    );
    let (host, token) = (ctx.api.addr.to_string(), ctx.agent.clone());
    let o = closed_loop(
        &ctx.api,
        ctx.load,
        StatusCode::OK,
        Arc::new(move |i, n| post(&host, &token, Some(&sessions[i]), call(n))),
    )
    .await?;
    Ok(throughput_row(
        ctx,
        "c.mcp",
        "MCP request_approval, allowed by policy (vs. c)",
        &o,
        ctx.load.connections,
        "report (vs. c)",
        None,
    ))
}
