//! `countersign mcp`: the tools over stdio, for MCP clients that can only
//! launch a command.
//!
//! A bridge, not a second implementation: it lists the same tool
//! definitions and forwards each call to `COUNTERSIGN_URL/mcp` with
//! `COUNTERSIGN_TOKEN` as the bearer key, so the service does all the
//! work and holds all the state. It fails closed: no token, an unreachable
//! or restarting service, a refused key, a timeout or an answer it cannot
//! read all come back as a tool error that says the action is NOT
//! approved, never as silence a model could read as consent.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ListToolsResult,
    PaginatedRequestParams, ServerConfig,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData, ServerHandler, ServiceError, ServiceExt};
use tokio::sync::Mutex;

use super::tools::{self, tool_error};

/// Where the service is when `COUNTERSIGN_URL` is not set.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Longer than any wait the service allows (60 s) plus creating the
/// request: past this the service is not answering, and that is a "no".
const CALL_TIMEOUT: Duration = Duration::from_secs(90);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Upstream = RunningService<RoleClient, ()>;

#[derive(Clone)]
pub struct Bridge {
    endpoint: String,
    token: Option<String>,
    /// One MCP session with the service, opened at the first call and
    /// opened again after it breaks (the service restarted, say).
    upstream: Arc<Mutex<Option<Upstream>>>,
}

impl Bridge {
    pub fn new(base_url: &str, token: Option<String>) -> Self {
        Self {
            endpoint: format!("{}/mcp", base_url.trim_end_matches('/')),
            token: token.filter(|t| !t.trim().is_empty()),
            upstream: Default::default(),
        }
    }

    async fn peer(&self) -> Result<rmcp::Peer<RoleClient>, String> {
        let Some(token) = &self.token else {
            return Err("COUNTERSIGN_TOKEN is not set, so Countersign cannot be asked".into());
        };
        let mut slot = self.upstream.lock().await;
        if let Some(running) = slot.as_ref()
            && !running.is_transport_closed()
        {
            return Ok(running.peer().clone());
        }
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.endpoint.clone())
                .auth_header(token.trim().to_string()),
        );
        let running = tokio::time::timeout(CONNECT_TIMEOUT, ().serve(transport))
            .await
            .map_err(|_| format!("Countersign at {} did not answer in time", self.endpoint))?
            .map_err(|e| format!("cannot reach Countersign at {}: {e}", self.endpoint))?;
        let peer = running.peer().clone();
        *slot = Some(running);
        Ok(peer)
    }

    async fn forget(&self) {
        if let Some(running) = self.upstream.lock().await.take() {
            let _ = running.cancel().await;
        }
    }

    async fn forward(
        &self,
        request: CallToolRequestParams,
        ct: &tokio_util::sync::CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        let peer = match self.peer().await {
            Ok(p) => p,
            Err(e) => return Ok(tool_error(e)),
        };
        let answer = tokio::select! {
            r = tokio::time::timeout(CALL_TIMEOUT, peer.call_tool(request)) => r,
            _ = ct.cancelled() => return Ok(tool_error("the call was cancelled")),
        };
        match answer {
            Ok(Ok(result)) => Ok(result),
            // The service's own protocol errors (an unknown tool) pass through.
            Ok(Err(ServiceError::McpError(e))) => Err(e),
            Ok(Err(e)) => {
                self.forget().await;
                Ok(tool_error(format!(
                    "no answer from Countersign at {}: {e}",
                    self.endpoint
                )))
            }
            Err(_) => {
                self.forget().await;
                Ok(tool_error(format!(
                    "Countersign at {} did not answer within {} s",
                    self.endpoint,
                    CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        tools::server_config()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::definitions()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.forward(request, &context.ct).await.map(Into::into)
    }
}

/// Serves the bridge on stdin/stdout until the client closes it. Logs go
/// to stderr (stdout is the protocol).
pub async fn run(base_url: &str, token: Option<String>) -> anyhow::Result<()> {
    let bridge = Bridge::new(base_url, token);
    let upstream = bridge.upstream.clone();
    let service = bridge
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP over stdio: {e}"))?;
    let _ = service.waiting().await;
    if let Some(running) = upstream.lock().await.take() {
        let _ = running.cancel().await;
    }
    Ok(())
}
