//! Runs a parsed `/audit` command against the trail. Both chat channels
//! call this and only render the answer.

use uuid::Uuid;

use super::App;
use crate::domain::audit_command::{AuditCommand, ParsedAudit};
use crate::domain::{Principal, Status};
use crate::error::{AppError, AppResult};
use crate::store::requests::{self, Approval, ListFilter};
use crate::store::trail::{self, AuditEventView, AuditFilter};

/// Rows per page in chat answers.
pub const PAGE_SIZE: u32 = 10;

#[derive(Debug)]
pub enum AuditAnswer {
    /// A list of requests (recent, pending, by person, search).
    Requests {
        title: String,
        items: Vec<Approval>,
        page: u32,
        more: bool,
    },
    /// One request's full timeline.
    Timeline {
        request: Box<Approval>,
        events: Vec<AuditEventView>,
    },
    /// What a person requested and decided.
    Person {
        principal: Principal,
        events: Vec<AuditEventView>,
        page: u32,
        more: bool,
    },
    Verify(VerifyResult),
    Help(&'static str),
}

impl App {
    /// `who` must already be a resolved principal (mentions resolved by the channel).
    pub async fn audit_query(
        &self,
        who: &Principal,
        parsed: ParsedAudit,
        person: Option<Principal>,
    ) -> AppResult<AuditAnswer> {
        if !self.is_auditor(who) {
            return Err(AppError::Forbidden(format!(
                "{who} is not in the policy's auditors group, so cannot read the audit trail from chat"
            )));
        }
        let page = parsed.page;
        let offset_pages = page.saturating_sub(1);
        let store = &self.store;
        Ok(match parsed.command {
            AuditCommand::Help => AuditAnswer::Help(crate::domain::audit_command::HELP),
            AuditCommand::Verify => AuditAnswer::Verify(self.verify_trail().await?),
            AuditCommand::Request(id) => {
                let request = requests::get(store, id).await?.ok_or_else(|| {
                    AppError::NotFound(format!("no approval request has id {id}"))
                })?;
                let mut events = trail::query(
                    store,
                    &AuditFilter {
                        request_id: Some(id),
                        limit: 500,
                        ..Default::default()
                    },
                )
                .await?;
                events.reverse();
                AuditAnswer::Timeline {
                    request: Box::new(request),
                    events: events.into_iter().map(Into::into).collect(),
                }
            }
            AuditCommand::Person(_) => {
                let principal = person.ok_or_else(|| {
                    AppError::BadRequest(
                        "that mention is not linked to a person Countersign knows".into(),
                    )
                })?;
                let events = paged_events(
                    store,
                    AuditFilter {
                        actor: Some(principal.to_string()),
                        ..Default::default()
                    },
                    offset_pages,
                )
                .await?;
                let more = events.len() > PAGE_SIZE as usize;
                AuditAnswer::Person {
                    principal,
                    events: events.into_iter().take(PAGE_SIZE as usize).collect(),
                    page,
                    more,
                }
            }
            AuditCommand::Recent => {
                list(
                    store,
                    "Recent requests",
                    ListFilter::default(),
                    offset_pages,
                    page,
                )
                .await?
            }
            AuditCommand::Pending => {
                list(
                    store,
                    "Pending requests",
                    ListFilter {
                        status: Some(Status::Pending),
                        ..Default::default()
                    },
                    offset_pages,
                    page,
                )
                .await?
            }
            AuditCommand::Search { action, since } => {
                let mut title = "Requests".to_string();
                if let Some(a) = &action {
                    title.push_str(&format!(" for action {a}"));
                }
                if let Some(s) = since {
                    title.push_str(&format!(" since {}", s.format("%Y-%m-%d %H:%M UTC")));
                }
                // Requests made since a time: UUID v7 ids sort by creation,
                // so the bound is an id.
                let mut items = Vec::new();
                let mut before: Option<Uuid> = None;
                let want = (offset_pages + 1) * PAGE_SIZE + 1;
                'outer: loop {
                    let batch = requests::list(
                        store,
                        &ListFilter {
                            action: action.clone(),
                            before,
                            limit: 200,
                            ..Default::default()
                        },
                    )
                    .await?;
                    if batch.is_empty() {
                        break;
                    }
                    before = batch.last().map(|a| a.id);
                    for a in batch {
                        if let Some(s) = since
                            && crate::clock::parse(&a.created_at).is_some_and(|t| t < s)
                        {
                            break 'outer;
                        }
                        items.push(a);
                        if items.len() as u32 >= want {
                            break 'outer;
                        }
                    }
                }
                let start = (offset_pages * PAGE_SIZE) as usize;
                let more = items.len() > start + PAGE_SIZE as usize;
                let items = items
                    .into_iter()
                    .skip(start)
                    .take(PAGE_SIZE as usize)
                    .collect();
                AuditAnswer::Requests {
                    title,
                    items,
                    page,
                    more,
                }
            }
        })
    }
}

async fn list(
    store: &crate::store::Store,
    title: &str,
    mut f: ListFilter,
    offset_pages: u32,
    page: u32,
) -> AppResult<AuditAnswer> {
    f.limit = (offset_pages + 1) * PAGE_SIZE + 1;
    let all = requests::list(store, &f).await?;
    let start = (offset_pages * PAGE_SIZE) as usize;
    let more = all.len() > start + PAGE_SIZE as usize;
    let items = all
        .into_iter()
        .skip(start)
        .take(PAGE_SIZE as usize)
        .collect();
    Ok(AuditAnswer::Requests {
        title: title.to_string(),
        items,
        page,
        more,
    })
}

async fn paged_events(
    store: &crate::store::Store,
    mut f: AuditFilter,
    offset_pages: u32,
) -> AppResult<Vec<AuditEventView>> {
    f.limit = (offset_pages + 1) * PAGE_SIZE + 1;
    let all = trail::query(store, &f).await?;
    Ok(all
        .into_iter()
        .skip((offset_pages * PAGE_SIZE) as usize)
        .map(Into::into)
        .collect())
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
/// What `audit verify` found, as the API, `/audit verify` and the Teams
/// `audit verify` card show it.
pub struct VerifyResult {
    pub ok: bool,
    pub events: u64,
    pub signatures: u64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The first bad event, when not ok.
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
    pub public_key: String,
    /// Rows of the derived tables (requests, decisions, facets, keys,
    /// identities) that disagree with the events; `ok` is false if any.
    pub mismatches: Vec<trail::Mismatch>,
    /// The newest signed head this service handed to a checkpoint sink:
    /// written to the file, or accepted by a remote sink.
    pub checkpoint: Option<crate::store::checkpoints::Checkpoint>,
    /// Which sink `checkpoint` went to.
    pub checkpoint_sink: Option<CheckpointSink>,
}

/// Where a checkpoint went: the file, or the remote sink that accepted it.
/// An enum, not a string: it packs beside `ok` and keeps [`AuditAnswer`] small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointSink {
    File,
    Webhook,
    Slack,
    Teams,
}

impl CheckpointSink {
    pub fn name(self) -> &'static str {
        match self {
            CheckpointSink::File => "file",
            CheckpointSink::Webhook => "webhook",
            CheckpointSink::Slack => "slack",
            CheckpointSink::Teams => "teams",
        }
    }
}

impl From<crate::store::checkpoint_sinks::Sink> for CheckpointSink {
    fn from(s: crate::store::checkpoint_sinks::Sink) -> Self {
        use crate::store::checkpoint_sinks::Sink;
        match s {
            Sink::Webhook => CheckpointSink::Webhook,
            Sink::Slack => CheckpointSink::Slack,
            Sink::Teams => CheckpointSink::Teams,
        }
    }
}

impl App {
    /// The newest head handed to any sink, and the sink's name.
    async fn newest_checkpoint(
        &self,
    ) -> AppResult<(
        Option<crate::store::checkpoints::Checkpoint>,
        Option<CheckpointSink>,
    )> {
        let file = self.store.checkpoints.get().and_then(|c| c.last());
        let remote = crate::store::checkpoint_sinks::newest_delivered(&self.store).await?;
        Ok(match (file, remote) {
            (Some(f), Some((sink, r))) if r.seq > f.seq => (Some(r), Some(sink.into())),
            (Some(f), _) => (Some(f), Some(CheckpointSink::File)),
            (None, Some((sink, r))) => (Some(r), Some(sink.into())),
            (None, None) => (None, None),
        })
    }

    /// Recomputes the chain and checks its signatures with the service's
    /// key, and checks the derived tables against the events.
    pub async fn verify_trail(&self) -> AppResult<VerifyResult> {
        let public_key = self.store.signer.public_hex().to_string();
        let v = trail::verify_store(&self.store, self.store.signer.verifying_key()).await?;
        let ok = v.ok();
        let (checkpoint, checkpoint_sink) = self.newest_checkpoint().await?;
        Ok(match v.chain {
            Ok(r) => VerifyResult {
                ok,
                events: r.events,
                signatures: r.signatures,
                head_seq: r.head_seq,
                head_hash: r.head_hash,
                first_bad_seq: None,
                reason: (!ok)
                    .then(|| format!("{} row(s) disagree with the trail", v.mismatches.len())),
                public_key,
                mismatches: v.mismatches,
                checkpoint,
                checkpoint_sink,
            },
            Err(b) => VerifyResult {
                ok: false,
                events: 0,
                signatures: 0,
                head_seq: 0,
                head_hash: String::new(),
                first_bad_seq: Some(b.seq),
                reason: Some(b.reason),
                public_key,
                mismatches: v.mismatches,
                checkpoint,
                checkpoint_sink,
            },
        })
    }
}
