//! Approval requests and their decisions as stored, and as shown.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, SqliteConnection};

use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::{self, StoredEvent};
use super::backend::Db;
use super::trail::Mismatch;
use super::{Store, WriteCtx};
use crate::domain::policy::OnExpiry;
use crate::domain::replay::{self, EventRef, State};
use crate::domain::rules::{PriorDecision, RequestFacts};
use crate::domain::{Principal, Risk, Status, Verdict};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    id: String,
    action: String,
    resource: String,
    summary: String,
    justification: Option<String>,
    details: String,
    risk: String,
    requester: String,
    key_id: String,
    key_owner: Option<String>,
    on_behalf_of: Option<String>,
    status: String,
    policy_rule: String,
    policy_version: String,
    required_approvals: i64,
    approvers: String,
    on_expiry: String,
    slack_channel: Option<String>,
    teams_conversation: Option<String>,
    callback_url: Option<String>,
    payload_sha256: String,
    created_at: String,
    expires_at: String,
    decided_at: Option<String>,
    decided_by: Option<String>,
    final_reason: Option<String>,
    idempotency_hash: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
pub struct DecisionView {
    /// The human who decided.
    pub principal: String,
    #[schema(value_type = Verdict)]
    pub verdict: String,
    pub comment: Option<String>,
    /// `api`, `slack` or `teams`.
    pub channel: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyRef {
    /// The name of the rule that matched, or `default`.
    pub rule: String,
    /// SHA-256 of the policy in force when the request was made.
    pub version: String,
}

/// An approval request as the API, webhooks and chat channels show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Approval {
    pub id: Uuid,
    pub status: Status,
    pub action: String,
    pub resource: String,
    pub summary: String,
    pub justification: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
    pub risk: Risk,
    /// The principal of the API key that made the request.
    #[schema(value_type = String, example = "agent:deploy-bot")]
    pub requester: Principal,
    #[schema(value_type = Option<String>, example = "user:alice@example.com")]
    pub on_behalf_of: Option<Principal>,
    pub policy: PolicyRef,
    pub required_approvals: u32,
    /// Who may decide; empty means any person not involved in the request.
    #[schema(value_type = Vec<String>)]
    pub approvers: Vec<Principal>,
    #[schema(value_type = String, example = "deny")]
    pub on_expiry: String,
    /// Approvals so far, one per distinct person.
    pub approvals: Vec<DecisionView>,
    /// The denial that ended the request, if one did.
    pub denial: Option<DecisionView>,
    /// SHA-256 of the canonical JSON of what approvers are shown.
    pub payload_sha256: String,
    pub callback_url: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    /// Why the request reached its final state, in words.
    pub reason: Option<String>,
    #[serde(skip)]
    pub key_id: Uuid,
    #[serde(skip)]
    pub key_owner: Option<Principal>,
    #[serde(skip)]
    pub slack_channel: Option<String>,
    #[serde(skip)]
    pub teams_conversation: Option<String>,
    #[serde(skip)]
    pub idempotency_hash: Option<String>,
    /// Every decision in order, including approvals later outweighed.
    #[serde(skip)]
    pub decisions: Vec<DecisionView>,
    /// The rule said `step_up: console` when the request was made. Read
    /// from the request's signed `policy.evaluated` event, never from a
    /// table an editor of the database could change alone; only
    /// [`load_checked`] and [`step_up_of`] read it, elsewhere it is false.
    #[serde(skip)]
    pub step_up: bool,
    /// Escalations so far (at most one per request), from the trail.
    pub escalations: Vec<EscalationView>,
}

/// One recorded escalation, as `request.escalated` says it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EscalationView {
    /// `escalate_to` as a person reads it ("oncall, erin@example.com").
    pub to: String,
    /// The people it added to the approvers.
    pub added: Vec<String>,
    pub at: String,
}

/// The escalations among a request's events, oldest first.
fn escalations(events: &[StoredEvent]) -> Vec<EscalationView> {
    events
        .iter()
        .filter(|e| e.kind == crate::domain::escalation::ESCALATED)
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
            EscalationView {
                to: data["label"].as_str().unwrap_or_default().to_string(),
                added: data["added"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect(),
                at: e.ts.clone(),
            }
        })
        .collect()
}

impl Approval {
    pub fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            status: self.status,
            requester: &self.requester,
            on_behalf_of: self.on_behalf_of.as_ref(),
            key_owner: self.key_owner.as_ref(),
            required_approvals: self.required_approvals,
            approvers: &self.approvers,
            decided_by: self.decided_by.as_deref(),
            decided_at: self.decided_at.as_deref().and_then(crate::clock::parse),
            // An unreadable deadline has passed: fail closed.
            expires_at: crate::clock::parse(&self.expires_at)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
            payload_sha256: &self.payload_sha256,
            resource: &self.resource,
            step_up: self.step_up,
        }
    }

    /// Decisions in the form the rules take, alongside their principals.
    pub fn prior_principals(&self) -> Vec<(Principal, Verdict)> {
        self.decisions
            .iter()
            .filter_map(|d| {
                Some((
                    Principal::parse(&d.principal).ok()?,
                    Verdict::parse(&d.verdict).ok()?,
                ))
            })
            .collect()
    }

    pub fn on_expiry(&self) -> OnExpiry {
        OnExpiry::parse(&self.on_expiry)
    }
}

pub fn prior<'a>(list: &'a [(Principal, Verdict)]) -> Vec<PriorDecision<'a>> {
    list.iter()
        .map(|(p, v)| PriorDecision {
            principal: p,
            verdict: *v,
            key_owner: None,
        })
        .collect()
}

pub const SELECT: &str = "SELECT id, action, resource, summary, justification, details, risk, requester, key_id, key_owner, \
    on_behalf_of, status, policy_rule, policy_version, required_approvals, approvers, on_expiry, slack_channel, \
    teams_conversation, callback_url, payload_sha256, created_at, expires_at, decided_at, decided_by, final_reason, \
    idempotency_hash FROM approval_requests";

/// [`SELECT`] on PostgreSQL: the same columns as text.
const PG_SELECT: &str = "SELECT id::text AS id, action, resource, summary, justification, details::text AS details, \
    risk, requester, key_id::text AS key_id, key_owner, on_behalf_of, status, policy_rule, policy_version, \
    required_approvals::bigint AS required_approvals, approvers::text AS approvers, on_expiry, slack_channel, \
    teams_conversation, callback_url, payload_sha256, cs_ts(created_at) AS created_at, \
    cs_ts(expires_at) AS expires_at, cs_ts(decided_at) AS decided_at, decided_by, final_reason, \
    idempotency_hash FROM approval_requests";

/// A connection of either backend, inside a transaction.
type ConnRef<'a> = Db<&'a mut SqliteConnection, &'a mut PgConnection>;

/// Reborrows a connection for one more statement.
fn again<'a>(conn: &'a mut ConnRef<'_>) -> ConnRef<'a> {
    match conn {
        Db::Sqlite(c) => Db::Sqlite(&mut **c),
        Db::Postgres(c) => Db::Postgres(&mut **c),
    }
}

fn corrupt(what: &str, id: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!("stored request {id} has a bad {what}"))
}

impl RequestRow {
    fn into_approval(self, decisions: Vec<DecisionView>) -> AppResult<Approval> {
        let id = &self.id;
        let principal = |s: &str, what: &str| Principal::parse(s).map_err(|_| corrupt(what, id));
        let approvals = decisions
            .iter()
            .filter(|d| d.verdict == "approve")
            .cloned()
            .collect();
        let denial = decisions.iter().find(|d| d.verdict == "deny").cloned();
        Ok(Approval {
            id: Uuid::parse_str(id).map_err(|_| corrupt("id", id))?,
            status: Status::parse(&self.status).map_err(|_| corrupt("status", id))?,
            details: serde_json::from_str(&self.details).map_err(|_| corrupt("details", id))?,
            risk: Risk::parse(&self.risk).map_err(|_| corrupt("risk", id))?,
            requester: principal(&self.requester, "requester")?,
            on_behalf_of: self
                .on_behalf_of
                .as_deref()
                .map(|p| principal(p, "on_behalf_of"))
                .transpose()?,
            key_owner: self
                .key_owner
                .as_deref()
                .map(|p| principal(p, "key owner"))
                .transpose()?,
            key_id: Uuid::parse_str(&self.key_id).map_err(|_| corrupt("key id", id))?,
            approvers: serde_json::from_str(&self.approvers)
                .map_err(|_| corrupt("approvers", id))?,
            policy: PolicyRef {
                rule: self.policy_rule,
                version: self.policy_version,
            },
            required_approvals: self.required_approvals as u32,
            action: self.action,
            resource: self.resource,
            summary: self.summary,
            justification: self.justification,
            on_expiry: self.on_expiry,
            approvals,
            denial,
            decisions,
            step_up: false,
            escalations: Vec::new(),
            payload_sha256: self.payload_sha256,
            callback_url: self.callback_url,
            created_at: self.created_at,
            expires_at: self.expires_at,
            decided_at: self.decided_at,
            decided_by: self.decided_by,
            reason: self.final_reason,
            slack_channel: self.slack_channel,
            teams_conversation: self.teams_conversation,
            idempotency_hash: self.idempotency_hash,
        })
    }
}

// The three reads of a request, for SQLite and PostgreSQL: run on a read
// transaction (sqlx) by `get`, and on the writer's connection by `load`
// and `load_checked`.
const DECISIONS: (&str, &str) = (
    "SELECT principal, verdict, comment, channel, created_at AS at FROM decisions \
     WHERE request_id = ? ORDER BY id",
    "SELECT principal, verdict, comment, channel, cs_ts(created_at) AS at FROM decisions \
     WHERE request_id = $1::uuid ORDER BY id",
);

/// A request's events, oldest first, through the `audit_events_request` index.
const EVENTS: (&str, &str) = (
    "SELECT seq, ts, actor, request_id, action, kind, data, prev_hash, hash \
     FROM audit_events WHERE request_id = ? ORDER BY seq",
    "SELECT seq, ts, actor, request_id, action, kind, data, prev_hash, hash \
     FROM audit_events WHERE request_id = $1 ORDER BY seq",
);

fn by_id() -> (String, String) {
    (
        format!("{SELECT} WHERE id = ?"),
        format!("{PG_SELECT} WHERE id = $1::uuid"),
    )
}

sqlite_row!(DecisionView {
    principal,
    verdict,
    comment,
    channel,
    at
});

impl super::stmt::Row for RequestRow {
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        row_from_rusqlite(r)
    }
}

async fn decisions(conn: ConnRef<'_>, id: &str) -> AppResult<Vec<DecisionView>> {
    Ok(on!(conn, sqlite: DECISIONS.0, postgres: DECISIONS.1,
        |sql, e| sqlx::query_as::<_, DecisionView>(sql).bind(id).fetch_all(e).await?))
}

/// Reads one request with its decisions (a read outside the writer),
/// checked against its audit events: a row that disagrees with them is
/// refused with [`AppError::Integrity`], never served. The three reads run
/// in one read transaction, so a commit between them cannot look like
/// tampering.
pub async fn get(store: &Store, id: Uuid) -> AppResult<Option<Approval>> {
    let mut tx = store.pool.begin().await?;
    let Some((row, decisions)) = load_parts(tx.conn(), id).await? else {
        return Ok(None);
    };
    let events = request_events(tx.conn(), &row.id).await?;
    tx.commit().await?;
    check(&row, &decisions, &events)?;
    let mut a = row.into_approval(decisions)?;
    a.escalations = escalations(&events);
    Ok(Some(a))
}

async fn load_parts(
    mut conn: ConnRef<'_>,
    id: Uuid,
) -> AppResult<Option<(RequestRow, Vec<DecisionView>)>> {
    let id = id.to_string();
    let (sqlite, postgres) = by_id();
    let row = on!(again(&mut conn),
        sqlite: sqlx::AssertSqlSafe(sqlite),
        postgres: sqlx::AssertSqlSafe(postgres),
        |sql, e| sqlx::query_as::<_, RequestRow>(sql).bind(&id).fetch_optional(e).await?);
    let Some(row) = row else {
        return Ok(None);
    };
    let decisions = decisions(conn, &id).await?;
    Ok(Some((row, decisions)))
}

/// [`load_parts`] on the writer's connection.
async fn load_parts_in(
    ctx: &mut WriteCtx,
    id: Uuid,
) -> AppResult<Option<(RequestRow, Vec<DecisionView>)>> {
    let id = id.to_string();
    let (sqlite, postgres) = by_id();
    let Some(row) = ctx
        .row::<RequestRow>(stmt!(
            sqlite: sqlite,
            postgres: postgres,
            [&id],
        ))
        .await?
    else {
        return Ok(None);
    };
    let decisions = ctx
        .rows(stmt!(
            sqlite: DECISIONS.0,
            postgres: DECISIONS.1,
            [&id],
        ))
        .await?;
    Ok(Some((row, decisions)))
}

/// [`request_events`] on the writer's connection.
async fn request_events_in(ctx: &mut WriteCtx, id: &str) -> AppResult<Vec<StoredEvent>> {
    ctx.rows(stmt!(
        sqlite: EVENTS.0,
        postgres: EVENTS.1,
        [id],
    ))
    .await
}

/// Reads one request on the writer's connection without checking it. Only
/// for reading back what the same job has just written (its events are not
/// flushed yet); anything the job decides on comes from [`load_checked`].
pub async fn load(ctx: &mut WriteCtx, id: Uuid) -> AppResult<Option<Approval>> {
    match load_parts_in(ctx, id).await? {
        None => Ok(None),
        Some((row, decisions)) => row.into_approval(decisions).map(Some),
    }
}

/// Reads one request inside the writer's transaction, checked against its
/// events (those committed and those this batch has appended but not yet
/// written), so the decision path never acts on a forged row.
pub async fn load_checked(ctx: &mut WriteCtx, id: Uuid) -> AppResult<Option<Approval>> {
    let Some((row, decisions)) = load_parts_in(ctx, id).await? else {
        return Ok(None);
    };
    let mut events = request_events_in(ctx, &row.id).await?;
    events.extend(ctx.pending_for(&row.id).cloned());
    check(&row, &decisions, &events)?;
    let mut approval = row.into_approval(decisions)?;
    approval.step_up = events.iter().any(asks_step_up);
    approval.escalations = escalations(&events);
    Ok(Some(approval))
}

pub(super) const STEP_UP_SQLITE: &str = "SELECT seq, ts, actor, request_id, action, kind, data, prev_hash, hash \
     FROM audit_events WHERE request_id = ? AND +kind = 'policy.evaluated'";

/// Whether a request's rule asked for a console decision, as its
/// `policy.evaluated` event records it (`"step_up": "console"`). The
/// pages and chat messages that show the mark read it here too.
///
/// `+kind` keeps SQLite on the request's index: without statistics it
/// would pick the kind's and read the `policy.evaluated` of every request
/// ever made, for every message rendered.
pub async fn step_up_of(store: &Store, id: Uuid) -> AppResult<bool> {
    let id = id.to_string();
    let events = on!(store.db(),
        sqlite: STEP_UP_SQLITE,
        postgres: "SELECT seq, ts, actor, request_id, action, kind, data, prev_hash, hash \
                   FROM audit_events WHERE request_id = $1 AND kind = 'policy.evaluated'",
        |sql, e| sqlx::query_as::<_, StoredEvent>(sql).bind(&id).fetch_all(e).await?);
    Ok(events.iter().any(asks_step_up))
}

fn asks_step_up(e: &StoredEvent) -> bool {
    e.kind == "policy.evaluated"
        && serde_json::from_str::<Value>(&e.data).is_ok_and(|d| {
            d.get("step_up").and_then(Value::as_str) == Some(crate::domain::rules::STEP_UP_CHANNEL)
        })
}

async fn request_events(conn: ConnRef<'_>, id: &str) -> AppResult<Vec<StoredEvent>> {
    Ok(on!(conn, sqlite: EVENTS.0, postgres: EVENTS.1,
        |sql, e| sqlx::query_as::<_, StoredEvent>(sql).bind(id).fetch_all(e).await?))
}

/// The state a stored row (and its decisions) claims, in the form
/// [`replay`](crate::domain::replay) produces.
fn stored_state(row: &RequestRow, decisions: &[DecisionView]) -> State {
    let json_text = |t: &str| serde_json::from_str(t).unwrap_or(Value::String(t.to_string()));
    let mut s = State::new();
    s.insert("action", json!(row.action));
    s.insert("resource", json!(row.resource));
    s.insert("summary", json!(row.summary));
    s.insert("justification", json!(row.justification));
    s.insert("details", json_text(&row.details));
    s.insert("risk", json!(row.risk));
    s.insert("requester", json!(row.requester));
    s.insert("on_behalf_of", json!(row.on_behalf_of));
    s.insert("key_id", json!(row.key_id));
    s.insert("key_owner", json!(row.key_owner));
    s.insert("callback_url", json!(row.callback_url));
    s.insert("expires_at", json!(row.expires_at));
    s.insert("payload_sha256", json!(row.payload_sha256));
    s.insert("created_at", json!(row.created_at));
    s.insert("policy_rule", json!(row.policy_rule));
    s.insert("policy_version", json!(row.policy_version));
    s.insert("required_approvals", json!(row.required_approvals));
    s.insert("approvers", json_text(&row.approvers));
    s.insert("on_expiry", json!(row.on_expiry));
    s.insert("status", json!(row.status));
    s.insert("decided_at", json!(row.decided_at));
    s.insert("decided_by", json!(row.decided_by));
    s.insert("reason", json!(row.final_reason));
    s.insert(
        "decisions",
        Value::Array(
            decisions
                .iter()
                .map(|d| {
                    json!({"principal": d.principal, "verdict": d.verdict, "comment": d.comment,
                           "channel": d.channel, "at": d.at})
                })
                .collect(),
        ),
    );
    s
}

/// What disagrees between a stored request and its events: events whose
/// hash is not what their content says (`event SEQ`), or row fields that
/// differ from the replayed state. Empty when they agree.
fn disagreements(
    row: &RequestRow,
    decisions: &[DecisionView],
    events: &[StoredEvent],
) -> Vec<String> {
    let mut bad: Vec<String> = events
        .iter()
        .filter(|e| {
            audit::event_hash(
                &e.prev_hash,
                e.seq,
                &e.ts,
                &e.actor,
                &e.request_id,
                &e.action,
                &e.kind,
                &e.data,
            ) != e.hash
        })
        .map(|e| format!("event {}", e.seq))
        .collect();
    let data: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap_or(Value::Null))
        .collect();
    let refs: Vec<EventRef<'_>> = events
        .iter()
        .zip(&data)
        .map(|(e, data)| EventRef {
            kind: &e.kind,
            ts: &e.ts,
            actor: &e.actor,
            data,
        })
        .collect();
    bad.extend(state_differences(row, decisions, &refs));
    bad
}

/// The row fields that differ from the state its events replay to (or why
/// the events replay to no state). `audit verify` calls this for every
/// request; it has checked the events' hashes in its chain pass already.
pub fn state_differences(
    row: &RequestRow,
    decisions: &[DecisionView],
    events: &[EventRef<'_>],
) -> Vec<String> {
    match replay::replay(events) {
        Ok(expected) => replay::differences(&expected, &stored_state(row, decisions))
            .into_iter()
            .map(str::to_string)
            .collect(),
        Err(why) => vec![format!("events ({why})")],
    }
}

/// The columns [`SELECT`] reads, from a rusqlite row (`audit verify` reads
/// the whole table on a blocking thread, like the chain).
pub(super) fn row_from_rusqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        id: r.get(0)?,
        action: r.get(1)?,
        resource: r.get(2)?,
        summary: r.get(3)?,
        justification: r.get(4)?,
        details: r.get(5)?,
        risk: r.get(6)?,
        requester: r.get(7)?,
        key_id: r.get(8)?,
        key_owner: r.get(9)?,
        on_behalf_of: r.get(10)?,
        status: r.get(11)?,
        policy_rule: r.get(12)?,
        policy_version: r.get(13)?,
        required_approvals: r.get(14)?,
        approvers: r.get(15)?,
        on_expiry: r.get(16)?,
        slack_channel: r.get(17)?,
        teams_conversation: r.get(18)?,
        callback_url: r.get(19)?,
        payload_sha256: r.get(20)?,
        created_at: r.get(21)?,
        expires_at: r.get(22)?,
        decided_at: r.get(23)?,
        decided_by: r.get(24)?,
        final_reason: r.get(25)?,
        idempotency_hash: r.get(26)?,
    })
}

impl RequestRow {
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn check(row: &RequestRow, decisions: &[DecisionView], events: &[StoredEvent]) -> AppResult<()> {
    let fields = disagreements(row, decisions, events);
    if fields.is_empty() {
        return Ok(());
    }
    tracing::error!(
        request_id = %row.id,
        fields = %fields.join(","),
        "a stored request disagrees with its audit trail; refusing to serve or act on it"
    );
    Err(AppError::Integrity {
        request_id: row.id.clone(),
        fields,
    })
}

/// The request an Idempotency-Key already made, checked like any other
/// load: a replayed answer is served, so it must agree with its events.
pub async fn find_idempotent(
    ctx: &mut WriteCtx,
    requester: &Principal,
    key: &str,
) -> AppResult<Option<Approval>> {
    let id: Option<String> = ctx.scalar(stmt!(
        sqlite: "SELECT id FROM approval_requests WHERE requester = ? AND idempotency_key = ?",
        postgres: "SELECT id::text FROM approval_requests WHERE requester = $1 AND idempotency_key = $2",
        [requester.as_str(), key],
    ))
        .await?;
    match id {
        None => Ok(None),
        Some(id) => load_checked(ctx, Uuid::parse_str(&id).map_err(|_| corrupt("id", &id))?).await,
    }
}

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub status: Option<Status>,
    /// A glob (`db.*`), matched with SQLite's GLOB.
    pub action: Option<String>,
    pub requester: Option<String>,
    /// Only requests this principal made (keys with only the request scope).
    pub visible_to: Option<String>,
    /// Return requests created before this id (the cursor).
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// Newest first, paged by id (UUID v7 sorts by creation time).
pub async fn list(store: &Store, f: &ListFilter) -> AppResult<Vec<Approval>> {
    let pg = store.backend() == super::postgres::Backend::Postgres;
    // Conditions with `?` marks (numbered for PostgreSQL below) and the
    // text each binds, in order.
    let mut conds: Vec<(&str, String)> = Vec::new();
    if let Some(s) = f.status {
        conds.push(("status = ?", s.as_str().to_string()));
    }
    if let Some(a) = &f.action {
        if pg {
            conds.push(("action ~ ?", super::backend::glob_to_regex(a)));
        } else {
            conds.push(("action GLOB ?", a.clone()));
        }
    }
    if let Some(r) = &f.requester {
        conds.push(("requester = ?", r.clone()));
    }
    if let Some(r) = &f.visible_to {
        conds.push(("requester = ?", r.clone()));
    }
    if let Some(b) = f.before {
        conds.push((if pg { "id < ?::uuid" } else { "id < ?" }, b.to_string()));
    }
    let mut sql = format!("{} WHERE 1 = 1", if pg { PG_SELECT } else { SELECT });
    for (c, _) in &conds {
        sql.push_str(" AND ");
        sql.push_str(c);
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    if pg {
        sql = super::backend::numbered(&sql, 1);
    }
    // Lists are checked too (a page is at most a few hundred requests, each
    // a handful of indexed rows): a forged row is never served by any read.
    let mut tx = store.pool.begin().await?;
    let rows = on!(tx.conn(),
    sqlite: sqlx::AssertSqlSafe(sql),
    postgres: sqlx::AssertSqlSafe(sql),
    |sql, e| {
        let mut q = sqlx::query_as::<_, RequestRow>(sql);
        for (_, v) in &conds {
            q = q.bind(v);
        }
        q.bind(f.limit as i64).fetch_all(e).await?
    });
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let d = decisions(tx.conn(), &row.id).await?;
        let events = request_events(tx.conn(), &row.id).await?;
        check(&row, &d, &events)?;
        out.push(row.into_approval(d)?);
    }
    tx.commit().await?;
    Ok(out)
}

pub struct NewRow<'a> {
    pub id: Uuid,
    pub content: &'a crate::domain::RequestContent,
    pub requester: &'a Principal,
    pub key_id: Uuid,
    pub key_owner: Option<&'a Principal>,
    pub status: Status,
    pub policy_rule: &'a str,
    pub policy_version: &'a str,
    pub required_approvals: u32,
    pub approvers: &'a [Principal],
    pub on_expiry: OnExpiry,
    pub slack_channel: Option<&'a str>,
    pub teams_conversation: Option<&'a str>,
    pub callback_url: Option<&'a str>,
    pub payload_sha256: &'a str,
    pub created_at: &'a str,
    pub expires_at: &'a str,
    pub decided_at: Option<&'a str>,
    pub decided_by: Option<&'a str>,
    pub final_reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub idempotency_hash: Option<&'a str>,
}

impl NewRow<'_> {
    /// The row exactly as `insert` writes it.
    fn row(&self) -> RequestRow {
        let c = self.content;
        RequestRow {
            id: self.id.to_string(),
            action: c.action.as_str().to_string(),
            resource: c.resource.clone(),
            summary: c.summary.clone(),
            justification: c.justification.clone(),
            details: serde_json::Value::Object(c.details.clone()).to_string(),
            risk: c.risk.as_str().to_string(),
            requester: self.requester.as_str().to_string(),
            key_id: self.key_id.to_string(),
            key_owner: self.key_owner.map(|p| p.as_str().to_string()),
            on_behalf_of: c.on_behalf_of.as_ref().map(|p| p.as_str().to_string()),
            status: self.status.as_str().to_string(),
            policy_rule: self.policy_rule.to_string(),
            policy_version: self.policy_version.to_string(),
            required_approvals: self.required_approvals as i64,
            approvers: serde_json::to_string(self.approvers).expect("principals serialize"),
            on_expiry: self.on_expiry.as_str().to_string(),
            slack_channel: self.slack_channel.map(str::to_string),
            teams_conversation: self.teams_conversation.map(str::to_string),
            callback_url: self.callback_url.map(str::to_string),
            payload_sha256: self.payload_sha256.to_string(),
            created_at: self.created_at.to_string(),
            expires_at: self.expires_at.to_string(),
            decided_at: self.decided_at.map(str::to_string),
            decided_by: self.decided_by.map(str::to_string),
            final_reason: self.final_reason.map(str::to_string),
            idempotency_hash: self.idempotency_hash.map(str::to_string),
        }
    }
}

/// Inserts a new request and returns it as a read would, without reading
/// it back (a new request has no decisions): two fewer round trips to the
/// writer's SQLite thread per request.
pub async fn insert(ctx: &mut WriteCtx, r: &NewRow<'_>) -> AppResult<Approval> {
    let row = r.row();
    ctx.exec(stmt!(
        sqlite: "INSERT INTO approval_requests (id, action, resource, summary, justification, details, risk, requester, \
            key_id, key_owner, on_behalf_of, status, policy_rule, policy_version, required_approvals, approvers, \
            on_expiry, slack_channel, teams_conversation, callback_url, payload_sha256, created_at, expires_at, \
            decided_at, decided_by, final_reason, idempotency_key, idempotency_hash) \
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        postgres: "INSERT INTO approval_requests (id, action, resource, summary, justification, details, risk, requester, \
            key_id, key_owner, on_behalf_of, status, policy_rule, policy_version, required_approvals, approvers, \
            on_expiry, slack_channel, teams_conversation, callback_url, payload_sha256, created_at, expires_at, \
            decided_at, decided_by, final_reason, idempotency_key, idempotency_hash) \
            VALUES ($1::uuid, $2, $3, $4, $5, $6::json, $7, $8, $9::uuid, $10, $11, $12, $13, $14, $15, $16::json, \
            $17, $18, $19, $20, $21, $22::timestamptz, $23::timestamptz, $24::timestamptz, $25, $26, $27, $28)",
        [&row.id, &row.action, &row.resource, &row.summary, &row.justification, &row.details, &row.risk, &row.requester, &row.key_id, &row.key_owner, &row.on_behalf_of, &row.status, &row.policy_rule, &row.policy_version, row.required_approvals, &row.approvers, &row.on_expiry, &row.slack_channel, &row.teams_conversation, &row.callback_url, &row.payload_sha256, &row.created_at, &row.expires_at, &row.decided_at, &row.decided_by, &row.final_reason, r.idempotency_key, &row.idempotency_hash],
    ))
        .await?;
    row.into_approval(vec![])
}

pub async fn insert_decision(
    ctx: &mut WriteCtx,
    id: Uuid,
    who: &Principal,
    verdict: Verdict,
    comment: Option<&str>,
    channel: &str,
    at: &str,
) -> AppResult<()> {
    ctx.exec(stmt!(
        sqlite: "INSERT INTO decisions (request_id, principal, verdict, comment, channel, created_at) \
            VALUES (?, ?, ?, ?, ?, ?)",
        postgres: "INSERT INTO decisions (request_id, principal, verdict, comment, channel, created_at) \
            VALUES ($1::uuid, $2, $3, $4, $5, $6::timestamptz)",
        [id.to_string(), who.as_str(), verdict.as_str(), comment, channel, at],
    ))
        .await?;
    Ok(())
}

/// Moves a pending request to a final state. The `status = 'pending'`
/// guard makes a second final transition impossible even if a caller skips
/// the rules.
pub async fn finalize(
    ctx: &mut WriteCtx,
    id: Uuid,
    status: Status,
    at: &str,
    by: &str,
    reason: &str,
) -> AppResult<()> {
    let done = ctx.exec(stmt!(
        sqlite: "UPDATE approval_requests SET status = ?, decided_at = ?, decided_by = ?, final_reason = ? \
            WHERE id = ? AND status = 'pending'",
        postgres: "UPDATE approval_requests SET status = $1, decided_at = $2::timestamptz, decided_by = $3, \
            final_reason = $4 WHERE id = $5::uuid AND status = 'pending'",
        [status.as_str(), at, by, reason, id.to_string()],
    ))
        .await?;
    if done != 1 {
        return Err(AppError::Conflict(format!(
            "request {id} is no longer pending"
        )));
    }
    Ok(())
}

/// The action of a request, for the audit events written about it (an
/// outbox delivery, say); `None` if no such request exists.
pub async fn action_of(ctx: &mut WriteCtx, id: Uuid) -> AppResult<Option<String>> {
    ctx.scalar(stmt!(
        sqlite: "SELECT action FROM approval_requests WHERE id = ?",
        postgres: "SELECT action FROM approval_requests WHERE id = $1::uuid",
        [id.to_string()],
    ))
    .await
}

/// Pending requests whose deadline is at or before `now`, earliest first,
/// at most `limit` of them (the expiry sweeper's batch).
pub(super) const OVERDUE_SQLITE: &str = "SELECT id FROM approval_requests INDEXED BY approval_requests_pending_expiry \
     WHERE status = 'pending' AND expires_at <= ? ORDER BY expires_at LIMIT ?";

pub async fn overdue(ctx: &mut WriteCtx, now: &str, limit: u32) -> AppResult<Vec<Uuid>> {
    let ids: Vec<String> = ctx
        .scalars(stmt!(
            sqlite: OVERDUE_SQLITE,
            postgres: "SELECT id::text FROM approval_requests WHERE status = 'pending' \
                AND expires_at <= $1::timestamptz ORDER BY expires_at LIMIT $2",
            [now, i64::from(limit)],
        ))
        .await?;
    ids.iter()
        .map(|id| Uuid::parse_str(id).map_err(|_| corrupt("id", id)))
        .collect()
}

/// The earliest deadline among pending requests, if any is pending.
pub(super) const NEXT_DEADLINE_SQLITE: &str = "SELECT MIN(expires_at) FROM approval_requests \
     INDEXED BY approval_requests_pending_expiry WHERE status = 'pending'";

pub async fn next_deadline(store: &Store) -> AppResult<Option<chrono::DateTime<chrono::Utc>>> {
    let next: Option<String> = on!(store.db(),
        sqlite: NEXT_DEADLINE_SQLITE,
        postgres: "SELECT cs_ts(MIN(expires_at)) FROM approval_requests WHERE status = 'pending'",
        |sql, e| sqlx::query_scalar(sql).fetch_one(e).await?);
    Ok(next.as_deref().and_then(crate::clock::parse))
}

/// How many requests are pending (the `countersign_pending_requests` gauge).
pub async fn pending_count(store: &Store) -> AppResult<i64> {
    Ok(on!(store.db(),
        sqlite: "SELECT COUNT(*) FROM approval_requests WHERE status = 'pending'",
        postgres: "SELECT COUNT(*) FROM approval_requests WHERE status = 'pending'",
        |sql, e| sqlx::query_scalar(sql).fetch_one(e).await?))
}

/// A `permit_redemptions` row's redeemer, key and time, as text.
type RedemptionCells = (Option<String>, Option<String>, Option<String>);

/// `audit verify` on PostgreSQL: every request replayed from its events
/// and compared with its row and decisions, as every load is (the names of
/// the fields that differ, or `missing` for events whose request has no
/// row), and each permit redemption with its request's events, all in one
/// read-only snapshot so a live service's commits cannot look like
/// disagreement. One request at a time, a few indexed reads each: slower
/// than SQLite's merged streams, but the same verdicts.
pub async fn replay_all_postgres(pool: &sqlx::PgPool) -> AppResult<Vec<Mismatch>> {
    use super::derived::{self, EventCells, RedemptionRow};
    let mut tx = super::postgres::read_snapshot(pool, true).await?;
    let mut out = Vec::new();
    let mismatch = |subject, id: &str, fields| Mismatch {
        subject,
        id: id.to_string(),
        fields,
    };
    // Redemptions are few (one per permit used); each is taken out of the
    // map as its request is checked, and what is left has no request.
    let mut redemptions: BTreeMap<String, RedemptionCells> = sqlx::query_as::<
        _,
        (String, Option<String>, Option<String>, Option<String>),
    >(
        "SELECT jti::text, redeemed_by, key_id::text, cs_ts(redeemed_at) FROM permit_redemptions",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(jti, by, key, at)| (jti, (by, key, at)))
    .collect();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM approval_requests ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    for id in ids {
        let uuid = Uuid::parse_str(&id).map_err(|_| corrupt("id", &id))?;
        let Some((row, decisions)) = load_parts(Db::Postgres(&mut *tx), uuid).await? else {
            continue;
        };
        let events = request_events(Db::Postgres(&mut *tx), &id).await?;
        let fields = disagreements(&row, &decisions, &events);
        if !fields.is_empty() {
            out.push(mismatch("request", &id, fields));
        }
        let redemption = redemptions.remove(&id);
        if redemption.is_some() || events.iter().any(|e| e.kind == derived::REDEEMED) {
            let rows: Vec<RedemptionRow<'_>> = redemption
                .iter()
                .map(|(by, key, at)| RedemptionRow {
                    redeemed_by: by.as_deref(),
                    key_id: key.as_deref(),
                    redeemed_at: at.as_deref(),
                })
                .collect();
            let cells: Vec<EventCells<'_>> = events
                .iter()
                .map(|e| EventCells {
                    kind: &e.kind,
                    ts: Some(&e.ts),
                    actor: Some(&e.actor),
                    data: Some(&e.data),
                })
                .collect();
            let fields = derived::redemption_differences(&id, &rows, &cells);
            if !fields.is_empty() {
                out.push(mismatch("permit", &id, fields));
            }
        }
    }
    for (jti, (by, key, at)) in &redemptions {
        let row = RedemptionRow {
            redeemed_by: by.as_deref(),
            key_id: key.as_deref(),
            redeemed_at: at.as_deref(),
        };
        out.push(mismatch(
            "permit",
            jti,
            derived::redemption_differences(jti, &[row], &[]),
        ));
    }
    let orphans: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT e.request_id FROM audit_events e \
         WHERE e.request_id <> '' AND NOT EXISTS \
         (SELECT 1 FROM approval_requests r WHERE r.id::text = e.request_id) ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    out.extend(
        orphans
            .into_iter()
            .map(|id| mismatch("request", &id, vec!["missing".to_string()])),
    );
    tx.commit().await?;
    Ok(out)
}

/// Takes the request's row for the rest of the write (PostgreSQL: `FOR
/// UPDATE`; SQLite has one writer) and says whether it is still pending.
/// A sweeper that counts what it recorded before only after this cannot
/// record it twice from two replicas: the second waits for the first to
/// commit, then sees its events.
pub async fn lock_pending(ctx: &mut WriteCtx, id: Uuid) -> AppResult<bool> {
    let found: Option<String> = ctx.scalar(stmt!(
        sqlite: "SELECT id FROM approval_requests WHERE id = ? AND status = 'pending'",
        postgres: "SELECT id::text FROM approval_requests WHERE id = $1::uuid AND status = 'pending' FOR UPDATE",
        [id.to_string()],
    ))
        .await?;
    Ok(found.is_some())
}

/// How many `kind` events the request has, committed or appended by this
/// batch and not yet written.
pub async fn count_events(ctx: &mut WriteCtx, id: Uuid, kind: &str) -> AppResult<usize> {
    let id = id.to_string();
    let committed = request_events_in(ctx, &id)
        .await?
        .iter()
        .filter(|e| e.kind == kind)
        .count();
    Ok(committed + ctx.pending_for(&id).filter(|e| e.kind == kind).count())
}

/// Replaces a pending request's approver set (escalation widens it; the
/// `request.escalated` event recorded beside it carries the same set, so
/// replay agrees).
pub async fn set_approvers(ctx: &mut WriteCtx, id: Uuid, approvers: &[Principal]) -> AppResult<()> {
    let json = serde_json::to_string(approvers).expect("principals serialize");
    let done = ctx.exec(stmt!(
        sqlite: "UPDATE approval_requests SET approvers = ? WHERE id = ? AND status = 'pending'",
        postgres: "UPDATE approval_requests SET approvers = $1::json WHERE id = $2::uuid AND status = 'pending'",
        [&json, id.to_string()],
    ))
        .await?;
    if done != 1 {
        return Err(AppError::Conflict(format!(
            "request {id} is no longer pending"
        )));
    }
    Ok(())
}
