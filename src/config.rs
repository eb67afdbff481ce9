//! Settings, from lowest to highest precedence: built-in defaults, a TOML
//! file (`--config`), `COUNTERSIGN_*` environment variables, command-line
//! flags. With none of them the service runs on `countersign.db` in the
//! working directory, on 127.0.0.1:8080, with the built-in fail-closed
//! policy.
//!
//! Secrets are wrapped in [`Secret`], whose `Debug` and `Display` never
//! print the value, so a settings dump in a log is safe.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::request::parse_duration;

/// A value that must never reach a log.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// First retry delay; doubles each attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// After this long since it was queued, a delivery is given up and audited as failed.
    pub give_up_after: Duration,
    /// PostgreSQL with several replicas: how long a replica holds a row it
    /// claimed for delivery. If it dies mid-delivery, another replica
    /// delivers the row once this has passed. Longer than any one attempt
    /// (an HTTP call with its timeout).
    pub lease: Duration,
}

/// How the HTTP server treats connections and callers (src/startup.rs,
/// src/http/auth.rs).
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// A connection that has not sent a whole request head this long after
    /// it opened (or after its first byte, between requests) is closed.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Most connections served at once; `None`: 10,000, kept below the file limit.
    pub max_connections: Option<usize>,
    /// Requests per second per API key (and, for failed authentication,
    /// per source address); 0 turns rate limiting off.
    pub rate_limit: u32,
    /// Requests a key may send at once above the steady rate.
    pub rate_burst: u32,
}

/// Where signed chain heads go besides the file (src/checkpoint_sinks.rs):
/// each through the outbox, at most once per `interval` and only when the
/// head moved.
#[derive(Debug, Clone)]
pub struct CheckpointSinkSettings {
    /// A URL that gets each published head as a signed webhook; judged at
    /// start like a callback URL (`COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS`).
    pub webhook: Option<String>,
    /// A Slack channel id that gets a short message per published head.
    pub slack_channel: Option<String>,
    /// A Teams conversation id that gets a short message per published head.
    pub teams_conversation: Option<String>,
    /// How often the newest head is published, at most.
    pub interval: Duration,
}

impl CheckpointSinkSettings {
    pub fn any(&self) -> bool {
        self.webhook.is_some() || self.slack_channel.is_some() || self.teams_conversation.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub bot_token: Option<Secret>,
    pub signing_secret: Option<Secret>,
    /// The app-level token (`xapp-…`) that opens Socket Mode connections:
    /// with it, clicks and commands arrive over a WebSocket the service
    /// opens, so it needs no public URL (and no signing secret).
    pub app_token: Option<Secret>,
    /// Default channel; a policy rule's `slack_channel` overrides it.
    pub channel: Option<String>,
    pub api_url: String,
}

impl SlackSettings {
    pub fn enabled(&self) -> bool {
        self.bot_token.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct TeamsSettings {
    pub app_id: Option<String>,
    pub app_password: Option<Secret>,
    pub tenant: Option<String>,
    pub openid_metadata_url: String,
    pub token_url: Option<String>,
    pub service_url: Option<String>,
    pub conversation: Option<String>,
    pub allowed_service_urls: Vec<String>,
}

impl TeamsSettings {
    pub fn enabled(&self) -> bool {
        self.app_id.is_some()
    }

    /// The token endpoint: configured, or the Microsoft identity platform's
    /// for the tenant (`botframework.com` for multi-tenant bots).
    pub fn token_url(&self) -> String {
        self.token_url.clone().unwrap_or_else(|| {
            let tenant = self.tenant.as_deref().unwrap_or("botframework.com");
            format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
        })
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub db: String,
    pub listen: SocketAddr,
    pub policy: Option<PathBuf>,
    /// Ed25519 key that signs the audit chain; created at first start.
    pub signing_key: PathBuf,
    /// The signing key itself (PKCS#8 PEM), given through the environment
    /// so it never sits on the database's disk; beats `signing_key`.
    pub signing_key_pem: Option<Secret>,
    /// A file (on another volume) that gets one JSON line per signed chain
    /// head, so a cut tail is detectable (`audit verify --checkpoints`).
    pub audit_checkpoints: Option<PathBuf>,
    pub checkpoint_sinks: CheckpointSinkSettings,
    pub webhook_secret: Option<Secret>,
    /// Where agents' callback URLs may point (src/net/egress.rs).
    pub webhook_destinations: crate::net::egress::Destinations,
    pub network: NetworkSettings,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub read_connections: u32,
    /// Longest `?wait=` a long-poll may ask for.
    pub max_wait: Duration,
    pub outbox: OutboxSettings,
    /// A directory whose templates override the compiled-in ones.
    pub templates_dir: Option<PathBuf>,
    /// Let everyone, not only the policy's `auditors` group, use `/audit` in chat.
    pub audit_open_to_all: bool,
    pub log_format: LogFormat,
    pub slack: SlackSettings,
    pub teams: TeamsSettings,
    /// Ed25519 key that signs permits (`crate::permits`); separate from
    /// the audit key so either can be rotated or guarded alone.
    pub permit_key: PathBuf,
    /// How long a permit is valid after its request is approved.
    pub permit_ttl: Duration,
    /// The service's public base URL: the permits' `iss`. Default: the listen URL.
    pub public_url: Option<String>,
    pub console: ConsoleSettings,
}

/// The web console (`/ui/`, src/console).
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// How long a one-time sign-in link from chat is valid (5 minutes).
    pub link_ttl: Duration,
    /// A session unused this long ends (30 minutes).
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not (12 hours).
    pub session_max: Duration,
    /// Sign-in with an OpenID Connect provider, when configured.
    pub oidc: Option<OidcSettings>,
}

/// `COUNTERSIGN_OIDC_ISSUER`, `_CLIENT_ID`, `_CLIENT_SECRET`.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            db: "countersign.db".into(),
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            policy: None,
            signing_key: PathBuf::new(),
            signing_key_pem: None,
            audit_checkpoints: None,
            checkpoint_sinks: CheckpointSinkSettings {
                webhook: None,
                slack_channel: None,
                teams_conversation: None,
                interval: Duration::from_secs(60),
            },
            webhook_secret: None,
            webhook_destinations: crate::net::egress::Destinations::public(),
            network: NetworkSettings {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(30),
                max_connections: None,
                rate_limit: 100,
                rate_burst: 1000,
            },
            max_body_bytes: 64 * 1024,
            read_connections: 8,
            max_wait: Duration::from_secs(60),
            outbox: OutboxSettings {
                retry_base: Duration::from_secs(1),
                retry_max: Duration::from_secs(300),
                give_up_after: Duration::from_secs(24 * 3600),
                lease: Duration::from_secs(60),
            },
            templates_dir: None,
            audit_open_to_all: false,
            log_format: LogFormat::Text,
            slack: SlackSettings {
                bot_token: None,
                signing_secret: None,
                app_token: None,
                channel: None,
                api_url: "https://slack.com/api".into(),
            },
            teams: TeamsSettings {
                app_id: None,
                app_password: None,
                tenant: None,
                openid_metadata_url:
                    "https://login.botframework.com/v1/.well-known/openidconfiguration".into(),
                token_url: None,
                service_url: None,
                conversation: None,
                allowed_service_urls: vec![],
            },
            permit_key: PathBuf::new(),
            permit_ttl: Duration::from_secs(600),
            public_url: None,
            console: ConsoleSettings {
                link_ttl: Duration::from_secs(5 * 60),
                session_idle: Duration::from_secs(30 * 60),
                session_max: Duration::from_secs(12 * 3600),
                oidc: None,
            },
        }
    }
}

/// The TOML file: the same keys as the environment variables, lower-cased
/// and without the prefix; Slack and Teams keys under `[slack]` and `[teams]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    db: Option<String>,
    listen: Option<String>,
    policy: Option<PathBuf>,
    signing_key: Option<PathBuf>,
    audit_checkpoints: Option<PathBuf>,
    audit_checkpoint_webhook: Option<String>,
    audit_checkpoint_slack_channel: Option<String>,
    audit_checkpoint_teams_conversation: Option<String>,
    audit_checkpoint_interval: Option<String>,
    webhook_secret: Option<Secret>,
    webhook_allowed_hosts: Option<Vec<String>>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    max_body_bytes: Option<usize>,
    read_connections: Option<u32>,
    max_wait: Option<String>,
    templates_dir: Option<PathBuf>,
    audit_open_to_all: Option<bool>,
    log_format: Option<LogFormat>,
    outbox_retry_base: Option<String>,
    outbox_retry_max: Option<String>,
    outbox_give_up_after: Option<String>,
    outbox_lease: Option<String>,
    permit_key: Option<PathBuf>,
    permit_ttl: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    slack: FileSlack,
    #[serde(default)]
    teams: FileTeams,
    #[serde(default)]
    console: FileConsole,
}

/// `[console]`: the web console's sign-in settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConsole {
    link_ttl: Option<String>,
    session_idle: Option<String>,
    session_max: Option<String>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSlack {
    bot_token: Option<Secret>,
    signing_secret: Option<Secret>,
    app_token: Option<Secret>,
    channel: Option<String>,
    api_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTeams {
    app_id: Option<String>,
    app_password: Option<Secret>,
    tenant: Option<String>,
    openid_metadata_url: Option<String>,
    token_url: Option<String>,
    service_url: Option<String>,
    conversation: Option<String>,
    allowed_service_urls: Option<Vec<String>>,
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub db: Option<String>,
    pub listen: Option<String>,
    pub policy: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
}

fn dur(key: &str, v: &str) -> Result<Duration, String> {
    parse_duration(v).map_err(|e| format!("{key}: {e}"))
}

impl Settings {
    /// Loads the layers in order; `env` is injected so tests need not touch
    /// the process environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Self, String> {
        let mut s = Settings::default();
        let env_file = env("COUNTERSIGN_CONFIG").map(PathBuf::from);
        if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let f: FileConfig = toml::from_str(&text)
                .map_err(|e| format!("config file {}: {e}", path.display()))?;
            s.apply_file(f)?;
        }
        s.apply_env(&env)?;
        if let Some(db) = &flags.db {
            s.db = db.clone();
        }
        if let Some(l) = &flags.listen {
            s.listen = parse_listen(l)?;
        }
        if let Some(p) = &flags.policy {
            s.policy = Some(p.clone());
        }
        if let Some(f) = flags.log_format {
            s.log_format = f;
        }
        if s.signing_key.as_os_str().is_empty() {
            s.signing_key = default_key_path(&s.db);
        }
        if s.permit_key.as_os_str().is_empty() {
            s.permit_key = default_permit_key_path(&s.db);
        }
        if s.permit_ttl < Duration::from_secs(1) {
            return Err("permit_ttl must be at least 1s".into());
        }
        if s.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        if s.max_wait > Duration::from_secs(60) {
            return Err("max_wait may be at most 60s".into());
        }
        let n = &s.network;
        if n.header_timeout.is_zero() || n.idle_timeout.is_zero() {
            return Err("header_timeout and idle_timeout must be longer than 0s".into());
        }
        if n.max_connections == Some(0) {
            return Err("max_connections must be at least 1".into());
        }
        if n.rate_limit > 0 && n.rate_burst == 0 {
            return Err("rate_burst must be at least 1 when rate_limit is on".into());
        }
        let c = &s.console;
        if c.link_ttl < Duration::from_secs(1) || c.link_ttl > Duration::from_secs(3600) {
            return Err("console link_ttl must be between 1s and 1h".into());
        }
        if c.session_idle.is_zero() || c.session_max < c.session_idle {
            return Err(
                "console session_idle must be longer than 0s and session_max at least as long"
                    .into(),
            );
        }
        s.check_checkpoint_sinks()?;
        Ok(s)
    }

    fn apply_file(&mut self, f: FileConfig) -> Result<(), String> {
        set(&mut self.db, f.db);
        if let Some(l) = f.listen {
            self.listen = parse_listen(&l)?;
        }
        self.policy = f.policy.or(self.policy.take());
        set(&mut self.signing_key, f.signing_key);
        self.audit_checkpoints = f.audit_checkpoints.or(self.audit_checkpoints.take());
        let cs = &mut self.checkpoint_sinks;
        cs.webhook = f.audit_checkpoint_webhook.or(cs.webhook.take());
        cs.slack_channel = f.audit_checkpoint_slack_channel.or(cs.slack_channel.take());
        cs.teams_conversation = f
            .audit_checkpoint_teams_conversation
            .or(cs.teams_conversation.take());
        if let Some(v) = f.audit_checkpoint_interval {
            cs.interval = dur("audit_checkpoint_interval", &v)?;
        }
        self.webhook_secret = f.webhook_secret.or(self.webhook_secret.take());
        if let Some(list) = f.webhook_allowed_hosts {
            self.webhook_destinations =
                crate::net::egress::Destinations::allowlist(&list.join(","))
                    .map_err(|e| format!("webhook_allowed_hosts: {e}"))?;
        }
        if let Some(v) = f.header_timeout {
            self.network.header_timeout = dur("header_timeout", &v)?;
        }
        if let Some(v) = f.idle_timeout {
            self.network.idle_timeout = dur("idle_timeout", &v)?;
        }
        if let Some(v) = f.max_connections {
            self.network.max_connections = Some(v);
        }
        set(&mut self.network.rate_limit, f.rate_limit);
        set(&mut self.network.rate_burst, f.rate_burst);
        set(&mut self.max_body_bytes, f.max_body_bytes);
        set(&mut self.read_connections, f.read_connections);
        if let Some(v) = f.max_wait {
            self.max_wait = dur("max_wait", &v)?;
        }
        self.templates_dir = f.templates_dir.or(self.templates_dir.take());
        set(&mut self.audit_open_to_all, f.audit_open_to_all);
        set(&mut self.log_format, f.log_format);
        if let Some(v) = f.outbox_retry_base {
            self.outbox.retry_base = dur("outbox_retry_base", &v)?;
        }
        if let Some(v) = f.outbox_retry_max {
            self.outbox.retry_max = dur("outbox_retry_max", &v)?;
        }
        if let Some(v) = f.outbox_lease {
            self.outbox.lease = dur("outbox_lease", &v)?;
        }
        if let Some(v) = f.outbox_give_up_after {
            self.outbox.give_up_after = dur("outbox_give_up_after", &v)?;
        }
        set(&mut self.permit_key, f.permit_key);
        if let Some(v) = f.permit_ttl {
            self.permit_ttl = dur("permit_ttl", &v)?;
        }
        self.public_url = f.public_url.or(self.public_url.take());
        let sl = &mut self.slack;
        sl.bot_token = f.slack.bot_token.or(sl.bot_token.take());
        sl.signing_secret = f.slack.signing_secret.or(sl.signing_secret.take());
        sl.app_token = f.slack.app_token.or(sl.app_token.take());
        sl.channel = f.slack.channel.or(sl.channel.take());
        set(&mut sl.api_url, f.slack.api_url);
        let t = &mut self.teams;
        t.app_id = f.teams.app_id.or(t.app_id.take());
        t.app_password = f.teams.app_password.or(t.app_password.take());
        t.tenant = f.teams.tenant.or(t.tenant.take());
        set(&mut t.openid_metadata_url, f.teams.openid_metadata_url);
        t.token_url = f.teams.token_url.or(t.token_url.take());
        t.service_url = f.teams.service_url.or(t.service_url.take());
        t.conversation = f.teams.conversation.or(t.conversation.take());
        set(&mut t.allowed_service_urls, f.teams.allowed_service_urls);
        let c = &mut self.console;
        if let Some(v) = f.console.link_ttl {
            c.link_ttl = dur("console.link_ttl", &v)?;
        }
        if let Some(v) = f.console.session_idle {
            c.session_idle = dur("console.session_idle", &v)?;
        }
        if let Some(v) = f.console.session_max {
            c.session_max = dur("console.session_max", &v)?;
        }
        let secret = f.console.oidc_client_secret.map(|s| s.0);
        c.oidc = oidc(
            f.console.oidc_issuer,
            f.console.oidc_client_id,
            secret,
            "console.oidc_issuer, console.oidc_client_id and console.oidc_client_secret",
        )?
        .or(c.oidc.take());
        Ok(())
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        set(&mut self.db, get("COUNTERSIGN_DB"));
        if let Some(l) = get("COUNTERSIGN_LISTEN") {
            self.listen = parse_listen(&l).map_err(|e| format!("COUNTERSIGN_LISTEN: {e}"))?;
        }
        if let Some(p) = get("COUNTERSIGN_POLICY") {
            self.policy = Some(p.into());
        }
        if let Some(p) = get("COUNTERSIGN_SIGNING_KEY") {
            self.signing_key = p.into();
        }
        if let Some(v) = get("COUNTERSIGN_SIGNING_KEY_PEM") {
            self.signing_key_pem = Some(Secret(v));
        }
        if let Some(p) = get("COUNTERSIGN_AUDIT_CHECKPOINTS") {
            self.audit_checkpoints = Some(p.into());
        }
        let cs = &mut self.checkpoint_sinks;
        set_some(&mut cs.webhook, get("COUNTERSIGN_AUDIT_CHECKPOINT_WEBHOOK"));
        set_some(
            &mut cs.slack_channel,
            get("COUNTERSIGN_AUDIT_CHECKPOINT_SLACK_CHANNEL"),
        );
        set_some(
            &mut cs.teams_conversation,
            get("COUNTERSIGN_AUDIT_CHECKPOINT_TEAMS_CONVERSATION"),
        );
        if let Some(v) = get("COUNTERSIGN_AUDIT_CHECKPOINT_INTERVAL") {
            cs.interval = dur("COUNTERSIGN_AUDIT_CHECKPOINT_INTERVAL", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_WEBHOOK_SECRET") {
            self.webhook_secret = Some(Secret(v));
        }
        if let Some(v) = get("COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS") {
            self.webhook_destinations = crate::net::egress::Destinations::allowlist(&v)
                .map_err(|e| format!("COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS: {e}"))?;
        }
        if let Some(v) = get("COUNTERSIGN_HEADER_TIMEOUT") {
            self.network.header_timeout = dur("COUNTERSIGN_HEADER_TIMEOUT", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_IDLE_TIMEOUT") {
            self.network.idle_timeout = dur("COUNTERSIGN_IDLE_TIMEOUT", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_MAX_CONNECTIONS") {
            self.network.max_connections = Some(
                v.parse()
                    .map_err(|_| "COUNTERSIGN_MAX_CONNECTIONS must be a number")?,
            );
        }
        if let Some(v) = get("COUNTERSIGN_RATE_LIMIT") {
            self.network.rate_limit = v.parse().map_err(
                |_| "COUNTERSIGN_RATE_LIMIT must be a number of requests per second (0: off)",
            )?;
        }
        if let Some(v) = get("COUNTERSIGN_RATE_BURST") {
            self.network.rate_burst = v
                .parse()
                .map_err(|_| "COUNTERSIGN_RATE_BURST must be a number of requests")?;
        }
        if let Some(v) = get("COUNTERSIGN_MAX_BODY_BYTES") {
            self.max_body_bytes = v
                .parse()
                .map_err(|_| "COUNTERSIGN_MAX_BODY_BYTES must be a number of bytes")?;
        }
        if let Some(v) = get("COUNTERSIGN_READ_CONNECTIONS") {
            self.read_connections = v
                .parse()
                .map_err(|_| "COUNTERSIGN_READ_CONNECTIONS must be a number")?;
        }
        if let Some(v) = get("COUNTERSIGN_MAX_WAIT") {
            self.max_wait = dur("COUNTERSIGN_MAX_WAIT", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_TEMPLATES_DIR") {
            self.templates_dir = Some(v.into());
        }
        if let Some(v) = get("COUNTERSIGN_AUDIT_OPEN_TO_ALL") {
            self.audit_open_to_all = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = get("COUNTERSIGN_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => return Err("COUNTERSIGN_LOG_FORMAT must be text or json".into()),
            };
        }
        if let Some(v) = get("COUNTERSIGN_OUTBOX_RETRY_BASE") {
            self.outbox.retry_base = dur("COUNTERSIGN_OUTBOX_RETRY_BASE", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_OUTBOX_RETRY_MAX") {
            self.outbox.retry_max = dur("COUNTERSIGN_OUTBOX_RETRY_MAX", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_OUTBOX_LEASE") {
            self.outbox.lease = dur("COUNTERSIGN_OUTBOX_LEASE", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_OUTBOX_GIVE_UP_AFTER") {
            self.outbox.give_up_after = dur("COUNTERSIGN_OUTBOX_GIVE_UP_AFTER", &v)?;
        }
        if let Some(p) = get("COUNTERSIGN_PERMIT_KEY") {
            self.permit_key = p.into();
        }
        if let Some(v) = get("COUNTERSIGN_PERMIT_TTL") {
            self.permit_ttl = dur("COUNTERSIGN_PERMIT_TTL", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("COUNTERSIGN_CONSOLE_SESSION_IDLE") {
            self.console.session_idle = dur("COUNTERSIGN_CONSOLE_SESSION_IDLE", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_CONSOLE_LINK_TTL") {
            self.console.link_ttl = dur("COUNTERSIGN_CONSOLE_LINK_TTL", &v)?;
        }
        if let Some(o) = oidc(
            get("COUNTERSIGN_OIDC_ISSUER"),
            get("COUNTERSIGN_OIDC_CLIENT_ID"),
            get("COUNTERSIGN_OIDC_CLIENT_SECRET"),
            "COUNTERSIGN_OIDC_ISSUER, COUNTERSIGN_OIDC_CLIENT_ID and COUNTERSIGN_OIDC_CLIENT_SECRET",
        )? {
            self.console.oidc = Some(o);
        }
        if let Some(v) = get("COUNTERSIGN_CONSOLE_SESSION_MAX") {
            self.console.session_max = dur("COUNTERSIGN_CONSOLE_SESSION_MAX", &v)?;
        }
        if let Some(v) = get("COUNTERSIGN_SLACK_BOT_TOKEN") {
            self.slack.bot_token = Some(Secret(v));
        }
        if let Some(v) = get("COUNTERSIGN_SLACK_SIGNING_SECRET") {
            self.slack.signing_secret = Some(Secret(v));
        }
        if let Some(v) = get("COUNTERSIGN_SLACK_APP_TOKEN") {
            self.slack.app_token = Some(Secret(v));
        }
        if let Some(v) = get("COUNTERSIGN_SLACK_CHANNEL") {
            self.slack.channel = Some(v);
        }
        set(&mut self.slack.api_url, get("COUNTERSIGN_SLACK_API_URL"));
        if let Some(v) = get("COUNTERSIGN_TEAMS_APP_ID") {
            self.teams.app_id = Some(v);
        }
        if let Some(v) = get("COUNTERSIGN_TEAMS_APP_PASSWORD") {
            self.teams.app_password = Some(Secret(v));
        }
        if let Some(v) = get("COUNTERSIGN_TEAMS_TENANT") {
            self.teams.tenant = Some(v);
        }
        set(
            &mut self.teams.openid_metadata_url,
            get("COUNTERSIGN_TEAMS_OPENID_METADATA_URL"),
        );
        if let Some(v) = get("COUNTERSIGN_TEAMS_TOKEN_URL") {
            self.teams.token_url = Some(v);
        }
        if let Some(v) = get("COUNTERSIGN_TEAMS_SERVICE_URL") {
            self.teams.service_url = Some(v);
        }
        if let Some(v) = get("COUNTERSIGN_TEAMS_CONVERSATION") {
            self.teams.conversation = Some(v);
        }
        if let Some(v) = get("COUNTERSIGN_TEAMS_ALLOWED_SERVICE_URLS") {
            self.teams.allowed_service_urls = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        Ok(())
    }
}

impl Settings {
    /// Refuses checkpoint sinks that could never deliver, so a mistake
    /// shows at start rather than as heads that silently never leave.
    pub fn check_checkpoint_sinks(&self) -> Result<(), String> {
        let cs = &self.checkpoint_sinks;
        if cs.interval.is_zero() {
            return Err("audit_checkpoint_interval must be longer than 0s".into());
        }
        if let Some(url) = &cs.webhook {
            if self.webhook_secret.is_none() {
                return Err("COUNTERSIGN_AUDIT_CHECKPOINT_WEBHOOK needs COUNTERSIGN_WEBHOOK_SECRET to sign what it sends".into());
            }
            self.webhook_destinations.judge(url).map_err(|why| {
                format!(
                    "COUNTERSIGN_AUDIT_CHECKPOINT_WEBHOOK {} is refused: {why} (COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS decides which hosts may be called)",
                    crate::net::egress::redact(url)
                )
            })?;
        }
        if cs.slack_channel.is_some() && !self.slack.enabled() {
            return Err("COUNTERSIGN_AUDIT_CHECKPOINT_SLACK_CHANNEL needs Slack (COUNTERSIGN_SLACK_BOT_TOKEN)".into());
        }
        if cs.teams_conversation.is_some() && !self.teams.enabled() {
            return Err("COUNTERSIGN_AUDIT_CHECKPOINT_TEAMS_CONVERSATION needs Teams (COUNTERSIGN_TEAMS_APP_ID)".into());
        }
        Ok(())
    }
}

/// OIDC sign-in from its three settings: all or none (`names` says which,
/// for the error).
fn oidc(
    issuer: Option<String>,
    client_id: Option<String>,
    secret: Option<String>,
    names: &str,
) -> Result<Option<OidcSettings>, String> {
    match (issuer, client_id, secret) {
        (None, None, None) => Ok(None),
        (Some(issuer), Some(client_id), Some(secret)) => Ok(Some(OidcSettings {
            issuer,
            client_id,
            client_secret: Secret(secret),
        })),
        _ => Err(format!("OIDC sign-in needs all of {names}")),
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn set_some<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an address like 127.0.0.1:8080"))
}

/// The signing key lives beside the database: `countersign.db` →
/// `countersign.db.audit-key.pem`.
fn default_key_path(db: &str) -> PathBuf {
    // A database URL is no place for a file: the key goes in the working
    // directory (set COUNTERSIGN_SIGNING_KEY to put it elsewhere).
    if crate::store::postgres::backend_of(db) != Ok(crate::store::postgres::Backend::Sqlite) {
        return PathBuf::from("countersign.audit-key.pem");
    }
    let path = db
        .strip_prefix("sqlite://")
        .or_else(|| db.strip_prefix("sqlite:"))
        .unwrap_or(db);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return PathBuf::from("countersign.audit-key.pem");
    }
    PathBuf::from(format!("{path}.audit-key.pem"))
}

/// The permit key lives beside the database too, under its own name:
/// `countersign.db` → `countersign.db.permit-key.pem`.
fn default_permit_key_path(db: &str) -> PathBuf {
    let audit = default_key_path(db).display().to_string();
    let stem = audit.strip_suffix("audit-key.pem").unwrap_or(&audit);
    PathBuf::from(format!("{stem}permit-key.pem"))
}

impl Settings {
    /// The permits' issuer: the public URL, or the listen URL.
    pub fn permit_issuer(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_nothing_set_the_defaults_apply() {
        let s = Settings::load(None, |_| None, &Overrides::default()).unwrap();
        assert_eq!(s.db, "countersign.db");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.signing_key, PathBuf::from("countersign.db.audit-key.pem"));
        assert!(!s.slack.enabled() && !s.teams.enabled());
    }

    #[test]
    fn with_a_postgres_url_the_keys_default_to_the_working_directory() {
        let s = Settings::load(
            None,
            |k| (k == "COUNTERSIGN_DB").then(|| "postgres://app@db.internal/cs".into()),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.signing_key, PathBuf::from("countersign.audit-key.pem"));
        assert_eq!(s.permit_key, PathBuf::from("countersign.permit-key.pem"));
    }

    #[test]
    fn the_permit_key_sits_beside_the_database_and_permits_live_ten_minutes() {
        let s = Settings::load(
            None,
            |k| (k == "COUNTERSIGN_DB").then(|| "/var/lib/cs/prod.db".into()),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            s.permit_key,
            PathBuf::from("/var/lib/cs/prod.db.permit-key.pem")
        );
        assert_eq!(s.permit_ttl, Duration::from_secs(600));
        assert_eq!(s.permit_issuer(), "http://127.0.0.1:8080");
        let s = Settings::load(
            None,
            |k| (k == "COUNTERSIGN_PERMIT_TTL").then(|| "0s".into()),
            &Overrides::default(),
        );
        assert!(s.is_err());
    }

    #[test]
    fn the_slack_app_token_comes_from_the_file_or_the_environment_and_prints_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[slack]\napp_token = \"xapp-from-file\"\n").unwrap();
        let s = Settings::load(Some(&file), |_| None, &Overrides::default()).unwrap();
        assert_eq!(
            s.slack.app_token.as_ref().map(Secret::expose),
            Some("xapp-from-file")
        );
        let s = Settings::load(
            Some(&file),
            |k| (k == "COUNTERSIGN_SLACK_APP_TOKEN").then(|| "xapp-from-env".into()),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            s.slack.app_token.as_ref().map(Secret::expose),
            Some("xapp-from-env")
        );
        assert!(!format!("{:?}", s.slack).contains("xapp-from-env"));
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "db = \"file.db\"\nlisten = \"127.0.0.1:1\"\n[slack]\nchannel = \"C1\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "COUNTERSIGN_LISTEN").then(|| "127.0.0.1:2".to_string());
        let flags = Overrides {
            db: Some("flag.db".into()),
            ..Default::default()
        };
        let s = Settings::load(Some(&file), env, &flags).unwrap();
        assert_eq!(s.db, "flag.db");
        assert_eq!(s.listen.port(), 2);
        assert_eq!(s.slack.channel.as_deref(), Some("C1"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings::load(
            None,
            |k| (k == "COUNTERSIGN_WEBHOOK_SECRET").then(|| "hunter2".into()),
            &Overrides::default(),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn network_settings_come_from_the_environment_and_bad_ones_are_named() {
        let env = |k: &str| match k {
            "COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS" => Some("127.0.0.1, *.example.com:8443".into()),
            "COUNTERSIGN_HEADER_TIMEOUT" => Some("2s".into()),
            "COUNTERSIGN_RATE_LIMIT" => Some("0".into()),
            _ => None,
        };
        let s = Settings::load(None, env, &Overrides::default()).unwrap();
        assert!(s.webhook_destinations.is_allowlist());
        assert_eq!(s.network.header_timeout, Duration::from_secs(2));
        assert_eq!(s.network.rate_limit, 0);
        let err = Settings::load(
            None,
            |k| (k == "COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS").then(|| "a*b".into()),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.contains("COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS"), "{err}");
    }

    #[test]
    fn network_settings_come_from_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "webhook_allowed_hosts = [\"127.0.0.1\", \"*.example.com\"]\nidle_timeout = \"5s\"\nmax_connections = 50\nrate_limit = 0\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), |_| None, &Overrides::default()).unwrap();
        assert!(s.webhook_destinations.is_allowlist());
        assert_eq!(s.network.idle_timeout, Duration::from_secs(5));
        assert_eq!(s.network.max_connections, Some(50));
        assert_eq!(s.network.rate_limit, 0);
    }

    #[test]
    fn a_bad_setting_is_refused_with_its_name() {
        let err = Settings::load(
            None,
            |k| (k == "COUNTERSIGN_LISTEN").then(|| "nowhere".into()),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.contains("COUNTERSIGN_LISTEN"));
    }

    #[test]
    fn console_settings_come_from_the_toml_file_and_the_environment_beats_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[console]\nlink_ttl = \"2m\"\nsession_idle = \"10m\"\nsession_max = \"8h\"\n\
             oidc_issuer = \"https://idp.example.com\"\noidc_client_id = \"countersign\"\n\
             oidc_client_secret = \"s3cret\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), |_| None, &Overrides::default()).unwrap();
        assert_eq!(s.console.link_ttl, Duration::from_secs(120));
        assert_eq!(s.console.session_idle, Duration::from_secs(600));
        assert_eq!(s.console.session_max, Duration::from_secs(8 * 3600));
        let oidc = s.console.oidc.as_ref().unwrap();
        assert_eq!(oidc.issuer, "https://idp.example.com");
        assert!(!format!("{s:?}").contains("s3cret"));
        let env = |k: &str| (k == "COUNTERSIGN_CONSOLE_LINK_TTL").then(|| "30s".to_string());
        let s = Settings::load(Some(&file), env, &Overrides::default()).unwrap();
        assert_eq!(s.console.link_ttl, Duration::from_secs(30));
    }

    #[test]
    fn console_settings_that_cannot_work_are_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        for (toml, named) in [
            (
                "[console]\noidc_issuer = \"https://idp\"\n",
                "console.oidc_client_id",
            ),
            ("[console]\nlink_ttl = \"2h\"\n", "link_ttl"),
            (
                "[console]\nsession_idle = \"2h\"\nsession_max = \"1h\"\n",
                "session_max",
            ),
            ("[console]\nlink_ttl = \"soon\"\n", "console.link_ttl"),
        ] {
            std::fs::write(&file, toml).unwrap();
            let err = Settings::load(Some(&file), |_| None, &Overrides::default()).unwrap_err();
            assert!(err.contains(named), "{toml}: {err}");
        }
    }
}
