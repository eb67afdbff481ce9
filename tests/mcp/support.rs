//! An MCP client per transport, and a person who decides the first pending
//! request they see.

use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};

use crate::helpers::TestApp;

pub type Client = RunningService<RoleClient, ()>;

/// An MCP client of `/mcp` with `token` as its bearer key.
pub async fn http_client(app: &TestApp, token: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.url("/mcp")).auth_header(token),
    );
    ().serve(transport)
        .await
        .expect("MCP client connects over HTTP")
}

/// The real binary's `countersign mcp`, launched as an MCP client launches
/// a server, pointed at `base` with `token`.
pub async fn stdio_client(base: &str, token: Option<&str>) -> Client {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
    cmd.arg("mcp")
        .env("COUNTERSIGN_URL", base)
        .env_remove("COUNTERSIGN_CONFIG")
        .env_remove("COUNTERSIGN_TOKEN");
    if let Some(t) = token {
        cmd.env("COUNTERSIGN_TOKEN", t);
    }
    let transport = TokioChildProcess::new(cmd).expect("countersign mcp starts");
    ().serve(transport)
        .await
        .expect("MCP client connects over stdio")
}

pub async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("tool arguments are an object")
    };
    tokio::time::timeout(
        Duration::from_secs(90),
        client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args)),
    )
    .await
    .expect("the tool answers in time")
    .expect("the tool call is not a protocol error")
}

/// The structured content of a successful call.
pub fn outcome(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "tool error: {}", text(r));
    r.structured_content.clone().expect("structured content")
}

pub fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn request_args(wait_seconds: u64) -> Value {
    let mut v = crate::helpers::export_request();
    v["wait_seconds"] = json!(wait_seconds);
    v
}

/// Bob, a person with a `decide` key: waits for a pending request to
/// appear and gives `verdict` with `comment`, over the HTTP API.
pub fn person_decides(
    base: String,
    token: String,
    verdict: &'static str,
    comment: &'static str,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        for _ in 0..200 {
            let page: Value = http
                .get(format!("{base}/v1/approvals?status=pending"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = page["items"][0]["id"].as_str() {
                let res = http
                    .post(format!("{base}/v1/approvals/{id}/decisions"))
                    .bearer_auth(&token)
                    .json(&json!({ "verdict": verdict, "comment": comment }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "decision: {}", res.text().await.unwrap());
                return id.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no pending request appeared");
    })
}
