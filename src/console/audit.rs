//! The audit explorer: the `/v1/audit` filters as a form (the same
//! `AuditParams` and store query), paging by cursor, the NDJSON / CSV
//! export, and the verify status (the chain's head and the last
//! checkpoint). For those who may read the trail: the policy's auditors,
//! or a session opened with an `audit` key.

use axum::extract::{Query, State};
use axum::response::Response;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::error::{ConsoleError, ConsoleResult};
use super::session::Signed;
use super::{html, templates};
use crate::channels::kit::view::utc_seconds;
use crate::channels::text::visible;
use crate::http::audit::AuditParams;
use crate::service::App;
use crate::store::trail::{self, AuditEventView, ExportFormat};

/// The form's fields: `/v1/audit`'s parameters, each possibly empty.
#[derive(Debug, Default, Deserialize, Serialize, Clone)]
pub struct Filters {
    #[serde(default)]
    request: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    limit: String,
    #[serde(default)]
    cursor: String,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl Filters {
    fn params(&self) -> ConsoleResult<AuditParams> {
        let num = |name: &str, v: &str| -> ConsoleResult<Option<i64>> {
            some(v)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        ConsoleError::BadRequest(format!(
                            "{name} must be a number, not '{}'",
                            visible(&v, false)
                        ))
                    })
                })
                .transpose()
        };
        Ok(AuditParams {
            request: some(&self.request),
            actor: some(&self.actor),
            action: some(&self.action),
            kind: some(&self.kind),
            since: some(&self.since),
            until: some(&self.until),
            limit: num("limit", &self.limit)?.map(|n| n.clamp(0, u32::MAX as i64) as u32),
            cursor: num("cursor", &self.cursor)?,
        })
    }

    /// This query with another cursor, for the "older" link.
    fn with_cursor(&self, cursor: i64) -> String {
        let mut f = self.clone();
        f.cursor = cursor.to_string();
        serde_urlencoded(&f)
    }
}

fn serde_urlencoded(f: &Filters) -> String {
    let pairs = [
        ("request", &f.request),
        ("actor", &f.actor),
        ("action", &f.action),
        ("kind", &f.kind),
        ("since", &f.since),
        ("until", &f.until),
        ("limit", &f.limit),
        ("cursor", &f.cursor),
    ];
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
        .finish()
}

#[derive(Serialize)]
struct Row {
    seq: i64,
    ts: String,
    actor: String,
    request_id: Option<String>,
    action: Option<String>,
    kind: String,
    data: String,
    hash: String,
    prev_hash: String,
}

fn require(app: &App, signed: &Signed) -> ConsoleResult<()> {
    if signed.may_audit(app) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "Only auditors may read the audit trail (the policy's auditors group, or a key with the audit scope).".into(),
        ))
    }
}

/// `GET /ui/audit`.
pub async fn page(
    State(app): State<App>,
    signed: Signed,
    Query(f): Query<Filters>,
) -> ConsoleResult<Response> {
    require(&app, &signed)?;
    let (rows, next, error) = match f.params()?.into_filter() {
        Ok(filter) => {
            let events = trail::query(&app.store, &filter).await?;
            let next = (events.len() == filter.limit as usize)
                .then(|| events.last().map(|e| e.seq))
                .flatten();
            let rows: Vec<Row> = events
                .into_iter()
                .map(AuditEventView::from)
                .map(|e| Row {
                    seq: e.seq,
                    ts: utc_seconds(&e.ts),
                    actor: visible(&e.actor, false),
                    request_id: e.request_id,
                    action: e.action.map(|a| visible(&a, false)),
                    kind: e.kind,
                    data: visible(&e.data.to_string(), false),
                    hash: e.hash,
                    prev_hash: e.prev_hash,
                })
                .collect();
            (rows, next.map(|c| f.with_cursor(c)), None)
        }
        Err(e) => (vec![], None, Some(e.to_string())),
    };
    let verify = app.verify_trail().await?;
    Ok(html(templates::render(
        "audit.html",
        context! {
            title => "Audit trail",
            f => Value::from(minijinja::value::Serde(&f)),
            rows => Value::from(minijinja::value::Serde(&rows)),
            next => next,
            error => error,
            verify => Value::from(minijinja::value::Serde(&verify)),
            ..super::request::chrome(&app, &signed)
        },
    )))
}

#[derive(Deserialize)]
pub struct Export {
    format: Option<ExportFormat>,
}

/// `GET /ui/audit/export?format=ndjson|csv`.
pub async fn export(
    State(app): State<App>,
    signed: Signed,
    Query(q): Query<Export>,
) -> ConsoleResult<Response> {
    require(&app, &signed)?;
    Ok(crate::http::audit::export_response(
        &app,
        q.format.unwrap_or(ExportFormat::Ndjson),
    ))
}
