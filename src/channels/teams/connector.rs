//! The outbound half of the Bot Framework: a client-credentials token from
//! the Microsoft identity platform (cached until shortly before it
//! expires), and the few Bot Connector calls the channel makes: post an
//! activity, update it in place, reply in a thread, look up a member.
//!
//! Every call goes to a conversation's `serviceUrl`, which arrives in
//! activities. The bot attaches its token to those calls, so it only calls
//! hosts on the allowlist (`allowed_service_urls` plus the configured
//! `service_url`'s host), and only over HTTPS unless the host is loopback
//! (tests, the local emulator). Errors say whether a retry can help, which
//! is what the outbox needs to know.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use crate::config::{Secret, TeamsSettings};
use crate::outbox::transport_error;

/// Scope of a token for calling the Bot Connector.
const SCOPE: &str = "https://api.botframework.com/.default";
/// A cached token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Why a call failed, and whether trying again later may help.
#[derive(Debug)]
pub enum CallError {
    Retry {
        error: String,
        after: Option<Duration>,
        status: Option<u16>,
    },
    Failed {
        error: String,
        status: Option<u16>,
    },
}

impl CallError {
    pub fn message(&self) -> &str {
        match self {
            CallError::Retry { error, .. } | CallError::Failed { error, .. } => error,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Retry { status, .. } | CallError::Failed { status, .. } => *status,
        }
    }
}

/// Hosts the bot may call, from `allowed_service_urls` entries (a URL, a
/// host, `host:port`, or `*.domain`) and the configured service URL.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<(String, Option<u16>)>,
}

impl Allowlist {
    pub fn from_settings(s: &TeamsSettings) -> Self {
        let mut entries = Vec::new();
        for raw in s.allowed_service_urls.iter().chain(s.service_url.iter()) {
            let raw = raw.trim();
            let parsed = if raw.contains("://") {
                Url::parse(raw)
                    .ok()
                    .and_then(|u| Some((u.host_str()?.to_string(), u.port())))
            } else {
                let host = raw.split('/').next().unwrap_or(raw);
                match host.rsplit_once(':') {
                    Some((h, p)) if p.parse::<u16>().is_ok() => {
                        Some((h.to_string(), p.parse().ok()))
                    }
                    _ => Some((host.to_string(), None)),
                }
            };
            if let Some((host, port)) = parsed.filter(|(h, _)| !h.is_empty()) {
                entries.push((host.to_ascii_lowercase(), port));
            }
        }
        Self { entries }
    }

    /// Parses `service_url` and checks it against the list.
    pub fn check(&self, service_url: &str) -> Result<Url, String> {
        let url = Url::parse(service_url)
            .map_err(|_| format!("serviceUrl '{service_url}' is not a URL"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("serviceUrl '{service_url}' has no host"))?
            .to_ascii_lowercase();
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => host == "localhost",
        };
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(format!(
                "serviceUrl '{service_url}' is not HTTPS; the bot only sends its token over HTTPS"
            ));
        }
        let allowed = self.entries.iter().any(|(h, port)| {
            let host_ok = match h.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => *h == host,
            };
            host_ok && port.is_none_or(|p| Some(p) == url.port())
        });
        if allowed {
            Ok(url)
        } else {
            Err(format!(
                "serviceUrl host '{host}' is not on the allowlist (COUNTERSIGN_TEAMS_ALLOWED_SERVICE_URLS)"
            ))
        }
    }
}

/// A conversation member as the Bot Connector describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: Option<String>,
    /// The display name, as a mention shows it.
    pub name: Option<String>,
    pub aad_object_id: Option<String>,
    pub email: Option<String>,
    pub user_principal_name: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ResourceResponse {
    id: Option<String>,
}

pub struct Connector {
    http: reqwest::Client,
    app_id: String,
    password: Option<Secret>,
    token_url: String,
    pub allow: Allowlist,
    token: Mutex<Option<(Secret, Instant)>>,
}

fn transport(e: &reqwest::Error) -> CallError {
    CallError::Retry {
        error: transport_error(e).into(),
        after: None,
        status: None,
    }
}

/// Turns a non-success answer into a retry or a failure.
fn classify(what: &str, res: &reqwest::Response) -> CallError {
    let status = res.status();
    let code = status.as_u16();
    let error = format!("{what} answered {code}");
    if code == 429 || status.is_server_error() || code == 408 {
        CallError::Retry {
            error,
            after: crate::outbox::retry_after(res.headers()),
            status: Some(code),
        }
    } else {
        CallError::Failed {
            error,
            status: Some(code),
        }
    }
}

fn api_base(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

fn seg(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

impl Connector {
    pub fn new(http: reqwest::Client, s: &TeamsSettings) -> Self {
        Self {
            http,
            app_id: s.app_id.clone().unwrap_or_default(),
            password: s.app_password.clone(),
            token_url: s.token_url(),
            allow: Allowlist::from_settings(s),
            token: Mutex::new(None),
        }
    }

    /// A token for the Bot Connector, from the cache while it is good.
    async fn token(&self) -> Result<Secret, CallError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let password = self.password.as_ref().ok_or_else(|| CallError::Failed {
            error: "COUNTERSIGN_TEAMS_APP_PASSWORD is not set, so the bot cannot get a token"
                .into(),
            status: None,
        })?;
        let res = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.app_id.as_str()),
                ("client_secret", password.expose()),
                ("scope", SCOPE),
            ])
            .send()
            .await
            .map_err(|e| transport(&e))?;
        if !res.status().is_success() {
            // A refused credential stays refused until the operator fixes it
            // and restarts; the row waits for that rather than being lost.
            let code = res.status().as_u16();
            return Err(CallError::Retry {
                error: format!("the token endpoint answered {code}"),
                after: crate::outbox::retry_after(res.headers()),
                status: Some(code),
            });
        }
        let answer: TokenAnswer = res.json().await.map_err(|_| CallError::Retry {
            error: "the token endpoint's answer is not a token".into(),
            after: None,
            status: None,
        })?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let until = Instant::now()
            + lifetime
                .saturating_sub(TOKEN_MARGIN)
                .max(Duration::from_secs(30).min(lifetime));
        let token = Secret::new(answer.access_token);
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CallError> {
        let token = self.token().await?;
        let res = req
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| transport(&e))?;
        if res.status().is_success() {
            return Ok(res);
        }
        if res.status() == reqwest::StatusCode::UNAUTHORIZED {
            // The token was revoked or rotated early: get a new one next time.
            self.forget_token().await;
            return Err(CallError::Retry {
                error: format!("{what} answered 401"),
                after: None,
                status: Some(401),
            });
        }
        Err(classify(what, &res))
    }

    fn checked(&self, service_url: &str) -> Result<Url, CallError> {
        self.allow
            .check(service_url)
            .map_err(|error| CallError::Failed {
                error,
                status: None,
            })
    }

    /// Posts an activity to a conversation; returns its activity id.
    pub async fn post(
        &self,
        service_url: &str,
        conversation: &str,
        activity: &Value,
    ) -> Result<String, CallError> {
        let base = api_base(&self.checked(service_url)?);
        let url = format!("{base}/v3/conversations/{}/activities", seg(conversation));
        let res = self
            .send("the Bot Connector", self.http.post(url).json(activity))
            .await?;
        let body: ResourceResponse = res.json().await.map_err(|_| CallError::Failed {
            error: "the Bot Connector's answer has no activity id".into(),
            status: None,
        })?;
        body.id
            .filter(|id| !id.is_empty())
            .ok_or(CallError::Failed {
                error: "the Bot Connector's answer has no activity id".into(),
                status: None,
            })
    }

    /// Replies to an activity (in a channel, in its thread): POST to the
    /// activity's URL.
    pub async fn reply(
        &self,
        service_url: &str,
        conversation: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<(), CallError> {
        let url = self.activity_url(service_url, conversation, activity_id)?;
        self.send("the Bot Connector", self.http.post(url).json(activity))
            .await
            .map(drop)
    }

    /// Replaces a posted activity (the card) in place: PUT to its URL.
    pub async fn update(
        &self,
        service_url: &str,
        conversation: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<(), CallError> {
        let url = self.activity_url(service_url, conversation, activity_id)?;
        self.send("the Bot Connector", self.http.put(url).json(activity))
            .await
            .map(drop)
    }

    /// `{serviceUrl}/v3/conversations/{id}/activities/{activityId}`, for an
    /// allowlisted service URL only.
    fn activity_url(
        &self,
        service_url: &str,
        conversation: &str,
        activity_id: &str,
    ) -> Result<String, CallError> {
        let base = api_base(&self.checked(service_url)?);
        Ok(format!(
            "{base}/v3/conversations/{}/activities/{}",
            seg(conversation),
            seg(activity_id)
        ))
    }

    /// Every member of a conversation, with their e-mail / UPN.
    pub async fn members(
        &self,
        service_url: &str,
        conversation: &str,
    ) -> Result<Vec<Member>, CallError> {
        let base = api_base(&self.checked(service_url)?);
        let url = format!("{base}/v3/conversations/{}/members", seg(conversation));
        let res = self.send("the member list", self.http.get(url)).await?;
        res.json().await.map_err(|_| CallError::Failed {
            error: "the member list's answer is not a list of members".into(),
            status: None,
        })
    }

    /// Opens (or finds) the bot's one-to-one chat with `member`; returns
    /// its conversation id.
    pub async fn open_chat(
        &self,
        service_url: &str,
        member: &str,
        tenant: Option<&str>,
    ) -> Result<String, CallError> {
        let base = api_base(&self.checked(service_url)?);
        let mut body = serde_json::json!({
            "isGroup": false,
            "bot": { "id": format!("28:{}", self.app_id) },
            "members": [{ "id": member }],
        });
        if let Some(t) = tenant {
            body["tenantId"] = serde_json::json!(t);
            body["channelData"] = serde_json::json!({ "tenant": { "id": t } });
        }
        let res = self
            .send(
                "the Bot Connector",
                self.http
                    .post(format!("{base}/v3/conversations"))
                    .json(&body),
            )
            .await?;
        let answer: ResourceResponse = res.json().await.map_err(|_| CallError::Failed {
            error: "the Bot Connector's answer has no conversation id".into(),
            status: None,
        })?;
        answer
            .id
            .filter(|id| !id.is_empty())
            .ok_or(CallError::Failed {
                error: "the Bot Connector's answer has no conversation id".into(),
                status: None,
            })
    }

    /// One member of a conversation, with their e-mail / UPN.
    pub async fn member(
        &self,
        service_url: &str,
        conversation: &str,
        user_id: &str,
    ) -> Result<Member, CallError> {
        let base = api_base(&self.checked(service_url)?);
        let url = format!(
            "{base}/v3/conversations/{}/members/{}",
            seg(conversation),
            seg(user_id)
        );
        let res = self.send("the member lookup", self.http.get(url)).await?;
        res.json().await.map_err(|_| CallError::Failed {
            error: "the member lookup's answer is not a member".into(),
            status: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str], service_url: Option<&str>) -> Allowlist {
        let mut s = crate::config::Settings::default().teams;
        s.allowed_service_urls = entries.iter().map(|e| e.to_string()).collect();
        s.service_url = service_url.map(Into::into);
        Allowlist::from_settings(&s)
    }

    #[test]
    fn the_allowlist_takes_urls_hosts_and_wildcards_and_the_configured_service_url() {
        let a = list(
            &[
                "https://smba.trafficmanager.net/amer/",
                "*.botframework.com",
            ],
            Some("https://smba.infra.gcc.teams.microsoft.com/"),
        );
        assert!(a.check("https://smba.trafficmanager.net/emea/").is_ok());
        assert!(a.check("https://x.botframework.com/").is_ok());
        assert!(
            a.check("https://smba.infra.gcc.teams.microsoft.com/teams/")
                .is_ok()
        );
        assert!(a.check("https://evil.example/").is_err());
        assert!(a.check("https://botframework.com.evil.example/").is_err());
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        let a = list(&["smba.trafficmanager.net", "127.0.0.1"], None);
        assert!(a.check("http://smba.trafficmanager.net/amer/").is_err());
        assert!(a.check("http://127.0.0.1:9/").is_ok());
    }

    #[test]
    fn an_entry_with_a_port_allows_only_that_port() {
        let a = list(&["127.0.0.1:8081"], None);
        assert!(a.check("http://127.0.0.1:8081/").is_ok());
        assert!(a.check("http://127.0.0.1:8082/").is_err());
    }
}
