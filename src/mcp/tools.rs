//! The four tools, their descriptions (written for a model: it must not go
//! ahead unless the result says `approved`), and the in-process handler.
//!
//! Nothing here decides anything. A request is built by the API's own body
//! type and validation (`CreateApproval`), created by `App::create_request`,
//! waited on with `App::wait_for` and read with the API's visibility rule.
//! A denial, an expiry or a wait that runs out are normal results; a bad
//! argument or a refusal is a tool error (`isError`) naming the field, so
//! the model sees why; protocol errors are kept for an unknown tool.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::Status;
use crate::error::AppError;
use crate::http::api::{CreateApproval, can_see};
use crate::http::extract::parse_json;
use crate::service::App;
use crate::service::approvals::{Created, NewRequest, body_hash};
use crate::store::keys::ApiKey;
use crate::store::requests::{self, Approval, ListFilter};

pub const REQUEST_APPROVAL: &str = "request_approval";
pub const WAIT_FOR_APPROVAL: &str = "wait_for_approval";
pub const GET_APPROVAL: &str = "get_approval";
pub const LIST_APPROVALS: &str = "list_approvals";

/// How long `request_approval` and `wait_for_approval` wait when not told:
/// under the 60 s that many clients and proxies allow one call.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(50);

const INSTRUCTIONS: &str = "Countersign is an approval gate: a person other than you decides whether a \
dangerous action may happen. Before any action that policy may require approval for (exports, \
deletions, role or infrastructure changes, payments), call request_approval and proceed only if \
the result's status is \"approved\". Any other status, any error, or no answer means NOT approved.";

/// The arguments `request_approval` takes. `CreateApproval` (the API's body)
/// owns all but the last two, which are the tool's own.
const REQUEST_FIELDS: &[&str] = &[
    "action",
    "resource",
    "summary",
    "justification",
    "details",
    "risk",
    "on_behalf_of",
    "expires_in",
    "wait_seconds",
    "idempotency_key",
];

/// What each tool answers about one request (structured content).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub id: Uuid,
    pub status: Status,
    pub action: String,
    pub resource: String,
    pub summary: String,
    /// `user:…` for a person, `policy:RULE` when policy decided.
    pub decided_by: Option<String>,
    /// The server's reason for the final state.
    pub reason: Option<String>,
    /// What the deciding person wrote.
    pub comment: Option<String>,
    pub expires_at: String,
    pub payload_sha256: String,
}

impl Outcome {
    pub fn of(a: &Approval) -> Self {
        let comment = match a.status {
            Status::Denied => a.denial.as_ref().and_then(|d| d.comment.clone()),
            Status::Approved => a.approvals.last().and_then(|d| d.comment.clone()),
            _ => None,
        };
        Self {
            id: a.id,
            status: a.status,
            action: a.action.clone(),
            resource: a.resource.clone(),
            summary: a.summary.clone(),
            decided_by: a.decided_by.clone(),
            reason: a.reason.clone(),
            comment,
            expires_at: a.expires_at.clone(),
            payload_sha256: a.payload_sha256.clone(),
        }
    }

    /// One line a model (or a person reading the transcript) cannot misread.
    pub fn line(&self) -> String {
        let by = self.decided_by.as_deref().unwrap_or("nobody");
        let why = quoted(self.comment.as_deref().or(self.reason.as_deref()));
        match self.status {
            Status::Approved => format!("approved by {by}: {why}"),
            Status::Denied => format!("denied by {by}: {why}; do not proceed"),
            Status::Expired => format!("expired without approval: {why}; do not proceed"),
            Status::Cancelled => format!("cancelled by {by}; do not proceed"),
            Status::Pending => format!(
                "still pending; call wait_for_approval with id {} (expires at {}); do not proceed until it is approved",
                self.id, self.expires_at
            ),
        }
    }

    pub fn result(&self) -> CallToolResult {
        let mut r = CallToolResult::success(vec![ContentBlock::text(self.line())]);
        r.structured_content = serde_json::to_value(self).ok();
        r
    }
}

fn quoted(s: Option<&str>) -> String {
    serde_json::to_string(s.unwrap_or("")).unwrap_or_default()
}

/// A tool error the model sees; says plainly that nothing was approved.
pub fn tool_error(message: impl std::fmt::Display) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "{message}. This is NOT an approval: do not proceed."
    ))])
}

fn app_error(e: AppError) -> CallToolResult {
    match e {
        AppError::Internal(_) | AppError::Sqlx(_) => {
            tracing::error!(error = %format!("{e:#}"), "mcp tool failed");
            tool_error("Countersign could not complete the call (internal error)")
        }
        other => tool_error(other),
    }
}

fn object(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(JsonObject::new()),
    }
}

fn outcome_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": { "type": "string", "format": "uuid" },
            "status": { "type": "string", "enum": ["pending", "approved", "denied", "expired", "cancelled"] },
            "action": { "type": "string" },
            "resource": { "type": "string" },
            "summary": { "type": "string" },
            "decided_by": { "type": ["string", "null"] },
            "reason": { "type": ["string", "null"] },
            "comment": { "type": ["string", "null"] },
            "expires_at": { "type": "string", "format": "date-time" },
            "payload_sha256": { "type": "string" }
        },
        "required": ["id", "status", "action", "resource", "summary", "expires_at", "payload_sha256"]
    })
}

fn wait_schema(what: &str) -> Value {
    json!({
        "type": "integer", "minimum": 0,
        "description": format!("{what} Default 50; values above the server's max_wait (at most 60) are capped.")
    })
}

/// The tool list; the stdio bridge lists the same.
pub fn definitions() -> Vec<Tool> {
    let id = json!({ "type": "string", "format": "uuid", "description": "The id request_approval returned." });
    vec![
        Tool::new(
            REQUEST_APPROVAL,
            "Ask a human to approve an action BEFORE you take it, and wait for the answer. \
             Proceed with the action only if the result's status is \"approved\", and only with \
             exactly the action and resource you asked for. \"denied\", \"expired\" and \"cancelled\" \
             mean do not proceed; tell the user the reason. \"pending\" means nobody has decided yet: \
             call wait_for_approval with the returned id, and do not proceed meanwhile. Any error also \
             means NOT approved. Describe the action honestly: the approver sees exactly what you send, \
             and the approval is bound to it (payload_sha256).",
            object(json!({
                "type": "object",
                "properties": {
                    "action": { "type": "string", "description": "What you want to do, dotted, e.g. db.export, iam.grant, deploy.production." },
                    "resource": { "type": "string", "description": "What it acts on, e.g. prod/customers." },
                    "summary": { "type": "string", "description": "One line for the approver: what and why." },
                    "justification": { "type": "string", "description": "Why it is needed (ticket, request from the user)." },
                    "details": { "type": "object", "description": "Key/value facts shown to the approver (at most 50 keys)." },
                    "risk": { "type": "string", "enum": ["low", "medium", "high", "critical"], "description": "Default medium." },
                    "on_behalf_of": { "type": "string", "description": "The human you act for, user:EMAIL; they cannot approve it themselves." },
                    "expires_in": { "type": "string", "description": "A shorter deadline than policy's, e.g. 10m." },
                    "wait_seconds": wait_schema("Seconds to wait for the decision."),
                    "idempotency_key": { "type": "string", "minLength": 1, "maxLength": 200, "description": "Send the same key when retrying the same request, so it is not asked twice." }
                },
                "required": ["action", "resource", "summary"],
                "additionalProperties": false
            })),
        )
        .with_raw_output_schema(object(outcome_schema())),
        Tool::new(
            WAIT_FOR_APPROVAL,
            "Wait for a pending approval request to be decided. Proceed only if the status is \
             \"approved\"; \"pending\" means still undecided (call again), anything else or an error \
             means do not proceed.",
            object(json!({
                "type": "object",
                "properties": { "id": id, "wait_seconds": wait_schema("Seconds to wait.") },
                "required": ["id"],
                "additionalProperties": false
            })),
        )
        .with_raw_output_schema(object(outcome_schema())),
        Tool::new(
            GET_APPROVAL,
            "Read an approval request's current state without waiting. Only \"approved\" allows \
             the action.",
            object(json!({
                "type": "object",
                "properties": { "id": id },
                "required": ["id"],
                "additionalProperties": false
            })),
        )
        .with_raw_output_schema(object(outcome_schema())),
        Tool::new(
            LIST_APPROVALS,
            "List your own approval requests, newest first.",
            object(json!({
                "type": "object",
                "properties": {
                    "status": { "type": "string", "enum": ["pending", "approved", "denied", "expired", "cancelled"] },
                    "limit": { "type": "integer", "minimum": 1, "maximum": 200, "description": "Default 20." }
                },
                "additionalProperties": false
            })),
        )
        .with_raw_output_schema(object(json!({
            "type": "object",
            "properties": { "items": { "type": "array", "items": outcome_schema() } },
            "required": ["items"]
        }))),
    ]
}

pub fn server_config() -> ServerConfig {
    ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        .with_server_info(Implementation::new(
            "countersign",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS)
}

/// The tools, run in-process against the service.
#[derive(Clone)]
pub struct Gate {
    app: App,
}

impl Gate {
    pub fn new(app: App) -> Self {
        Self { app }
    }

    fn wait(&self, args: &mut JsonObject) -> Result<Duration, CallToolResult> {
        let max = self.app.settings.max_wait;
        match args.remove("wait_seconds") {
            None | Some(Value::Null) => Ok(DEFAULT_WAIT.min(max)),
            Some(v) => match v.as_u64() {
                Some(s) => Ok(Duration::from_secs(s).min(max)),
                None => Err(tool_error(format!(
                    "wait_seconds must be a whole number of seconds, 0 or more (got {v})"
                ))),
            },
        }
    }

    async fn request_approval(
        &self,
        key: &ApiKey,
        mut args: JsonObject,
        session: Option<String>,
        rpc_id: String,
        ct: &tokio_util::sync::CancellationToken,
    ) -> CallToolResult {
        if let Some(unknown) = args.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
            return tool_error(format!(
                "unknown field `{unknown}`; request_approval takes {}",
                REQUEST_FIELDS.join(", ")
            ));
        }
        let wait = match self.wait(&mut args) {
            Ok(w) => w,
            Err(e) => return e,
        };
        // An explicit key, else the JSON-RPC id within this MCP session: a
        // retried call is the same request, never a second one. Namespaced
        // so MCP keys cannot collide with the API's Idempotency-Key header.
        let idempotency_key = match args.remove("idempotency_key") {
            None | Some(Value::Null) => session.map(|s| format!("mcp-session:{s}:{rpc_id}")),
            Some(Value::String(k)) if !k.trim().is_empty() && k.len() <= 200 => {
                Some(format!("mcp:{}", k.trim()))
            }
            Some(_) => return tool_error("idempotency_key must be text of 1 to 200 characters"),
        };
        // The API's body type and validation, and the API's canonical hash
        // of it (what tells a retry from a reuse of the key).
        let body = Value::Object(args).to_string();
        let parsed = parse_json::<CreateApproval>(body.as_bytes()).and_then(CreateApproval::parse);
        let (content, expires_in, callback_url) = match parsed {
            Ok(p) => p,
            Err(e) => return app_error(e),
        };
        let created = self
            .app
            .create_request(
                key,
                NewRequest {
                    content,
                    expires_in,
                    callback_url,
                    idempotency_key,
                    body_hash: body_hash(body.as_bytes()),
                },
            )
            .await;
        let approval = match created {
            Ok(Created::New(a)) | Ok(Created::Replayed(a)) => a,
            Err(e) => return app_error(e),
        };
        self.finish(approval, wait, ct).await
    }

    /// Waits (if pending and asked to) and answers the request's state.
    async fn finish(
        &self,
        a: Approval,
        wait: Duration,
        ct: &tokio_util::sync::CancellationToken,
    ) -> CallToolResult {
        if a.status != Status::Pending || wait.is_zero() {
            return Outcome::of(&a).result();
        }
        let id = a.id;
        drop(a);
        // A cancelled MCP call stops waiting; the request itself stays.
        let waited = tokio::select! {
            r = self.app.wait_for(id, wait) => r,
            _ = ct.cancelled() => return tool_error("the call was cancelled while waiting"),
        };
        match waited {
            Ok(Some(a)) => Outcome::of(&a).result(),
            Ok(None) => tool_error(format!("no approval request has id {id}")),
            Err(e) => app_error(e),
        }
    }

    /// The request, if this key may see it (the API's rule).
    async fn visible(
        &self,
        key: &ApiKey,
        args: &mut JsonObject,
    ) -> Result<Approval, CallToolResult> {
        let id = match args.remove("id") {
            Some(Value::String(s)) => Uuid::parse_str(s.trim())
                .map_err(|_| tool_error(format!("id `{s}` is not a request id")))?,
            Some(_) => return Err(tool_error("id must be a request id (text)")),
            None => return Err(tool_error("missing field `id`")),
        };
        let not_found = || tool_error(format!("no approval request has id {id}"));
        match Box::pin(requests::get(&self.app.store, id)).await {
            Ok(Some(a)) if can_see(key, &a) => Ok(a),
            Ok(_) => Err(not_found()),
            Err(e) => Err(app_error(e)),
        }
    }

    async fn list(&self, key: &ApiKey, mut args: JsonObject) -> CallToolResult {
        let status = match args.remove("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match Status::parse(&s) {
                Ok(s) => Some(s),
                Err(e) => return tool_error(format!("status: {e}")),
            },
            Some(_) => return tool_error("status must be text"),
        };
        let limit = match args.remove("limit") {
            None | Some(Value::Null) => 20,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=200) => n as u32,
                _ => return tool_error(format!("limit must be between 1 and 200 (got {v})")),
            },
        };
        if let Some(unknown) = args.keys().next() {
            return tool_error(format!(
                "unknown field `{unknown}`; list_approvals takes status, limit"
            ));
        }
        let filter = ListFilter {
            status,
            action: None,
            requester: None,
            // Own requests only, whatever else the key may read.
            visible_to: Some(key.principal.to_string()),
            before: None,
            limit,
        };
        match requests::list(&self.app.store, &filter).await {
            Ok(items) => {
                let items: Vec<Outcome> = items.iter().map(Outcome::of).collect();
                let text = if items.is_empty() {
                    "no requests".to_string()
                } else {
                    items
                        .iter()
                        .map(|o| format!("{} {} {} on {}", o.id, o.status, o.action, o.resource))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
                r.structured_content = Some(json!({ "items": items }));
                r
            }
            Err(e) => app_error(e),
        }
    }

    async fn call(
        &self,
        key: &ApiKey,
        req: CallToolRequestParams,
        ctx: &RequestContext<RoleServer>,
        session: Option<String>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut args = req.arguments.unwrap_or_default();
        Ok(match req.name.as_ref() {
            REQUEST_APPROVAL => {
                self.request_approval(key, args, session, ctx.id.to_string(), &ctx.ct)
                    .await
            }
            WAIT_FOR_APPROVAL => match self.wait(&mut args) {
                Err(e) => e,
                Ok(wait) => match self.visible(key, &mut args).await {
                    Err(e) => e,
                    Ok(_) if !args.is_empty() => unknown_fields(&args, "id, wait_seconds"),
                    Ok(a) => self.finish(a, wait, &ctx.ct).await,
                },
            },
            GET_APPROVAL => match self.visible(key, &mut args).await {
                Err(e) => e,
                Ok(_) if !args.is_empty() => unknown_fields(&args, "id"),
                Ok(a) => Outcome::of(&a).result(),
            },
            LIST_APPROVALS => self.list(key, args).await,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no tool named {other}; see tools/list"),
                    None,
                ));
            }
        })
    }
}

fn unknown_fields(args: &JsonObject, takes: &str) -> CallToolResult {
    let unknown = args.keys().next().map(String::as_str).unwrap_or("");
    tool_error(format!(
        "unknown field `{unknown}`; this tool takes {takes}"
    ))
}

impl ServerHandler for Gate {
    fn get_info(&self) -> ServerConfig {
        server_config()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(definitions()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Put there by `super::authenticate` for every HTTP request; its
        // absence means the route lost its guard, so refuse (fail closed).
        let parts = context.extensions.get::<http::request::Parts>();
        let Some(key) = parts.and_then(|p| p.extensions.get::<ApiKey>()).cloned() else {
            return Err(ErrorData::invalid_request(
                "not authenticated: send an API key as Authorization: Bearer <token>",
                None,
            ));
        };
        let session = parts
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.call(&key, request, &context, session)
            .await
            .map(Into::into)
    }
}
