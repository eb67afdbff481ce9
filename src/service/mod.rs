//! The application: what every surface (HTTP API, Slack, Teams, CLI) calls
//! to create, decide, cancel and expire requests. Each operation is one
//! writer job, so its rows, its audit events and its outbox rows commit
//! together or not at all.

pub mod approvals;
pub mod audit_query;
pub mod escalation;
pub mod expiry;
pub mod reminders;

use std::sync::{Arc, RwLock};

use serde_json::json;

use crate::config::Settings;
use crate::domain::{Policy, Principal};
use crate::error::AppResult;
use crate::store::Store;

#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub settings: Arc<Settings>,
    policy: Arc<RwLock<Arc<Policy>>>,
    /// Chat channels that get a message for each request needing approval
    /// (`slack`, `teams`); each has `<name>.post` / `<name>.update` outbox handlers.
    pub channels: Arc<Vec<&'static str>>,
    /// One HTTP client for every outbound call (webhooks, chat APIs).
    pub http: reqwest::Client,
    /// Cancelled when the service starts shutting down, so long-polls
    /// answer at once instead of holding the shutdown for up to a minute.
    pub stopping: tokio_util::sync::CancellationToken,
    /// The base URL people open the console at (`COUNTERSIGN_PUBLIC_URL`,
    /// else the address the service bound), set once it has bound.
    pub console_base: Arc<std::sync::OnceLock<String>>,
}

impl App {
    pub fn new(
        store: Store,
        settings: Settings,
        policy: Policy,
        channels: Vec<&'static str>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .connect_timeout(std::time::Duration::from_secs(5))
            .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            store,
            settings: Arc::new(settings),
            policy: Arc::new(RwLock::new(Arc::new(policy))),
            channels: Arc::new(channels),
            http,
            stopping: Default::default(),
            console_base: Default::default(),
        })
    }

    /// The console's base URL, without a trailing slash.
    pub fn console_url(&self) -> String {
        match &self.settings.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => self
                .console_base
                .get()
                .cloned()
                .unwrap_or_else(|| format!("http://{}", self.settings.listen)),
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().expect("policy lock").clone()
    }

    /// Whether `who` may read the audit trail from chat.
    pub fn is_auditor(&self, who: &Principal) -> bool {
        self.settings.audit_open_to_all || self.policy().auditors().contains(who)
    }

    /// Re-reads the policy file (SIGHUP). A bad file keeps the old policy
    /// in force; both outcomes are audited.
    pub async fn reload_policy(&self) -> AppResult<()> {
        let Some(path) = self.settings.policy.clone() else {
            return Ok(());
        };
        match Policy::load(&path) {
            Ok(p) => {
                let data =
                    json!({ "origin": p.origin, "version": p.version, "rules": p.rule_count() });
                *self.policy.write().expect("policy lock") = Arc::new(p);
                tracing::info!(path = %path.display(), "policy reloaded");
                self.audit_system("policy.reloaded", data).await
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; keeping the policy in force");
                self.audit_system("policy.reload_failed", json!({ "error": e }))
                    .await
            }
        }
    }

    pub async fn audit_system(&self, kind: &'static str, data: serde_json::Value) -> AppResult<()> {
        self.store
            .write(move |ctx| {
                Box::pin(async move {
                    ctx.audit(Principal::system(), None, kind, &data).await?;
                    Ok(())
                })
            })
            .await
    }
}
