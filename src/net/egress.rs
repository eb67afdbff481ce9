//! Where Countersign may send what an agent asked for: the one place an
//! outbound URL chosen by an agent (today `callback_url`) is judged.
//!
//! An agent picks the webhook's destination, so without a check Countersign
//! would POST wherever it is told: its own loopback port, the cloud
//! metadata service, a database on the private network. The rules:
//!
//! - `http` or `https` only, and no user name or password in the URL (it
//!   would be echoed in the API and the trail).
//! - Without `COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS`, any host whose addresses
//!   are all public. Loopback, private, link-local, unique-local, shared,
//!   multicast, unspecified, reserved and documentation addresses are
//!   refused, in any spelling: `url` normalises decimal, octal and hex IPv4
//!   (`2130706433`, `0177.1`), and IPv4-mapped, -compatible, NAT64 and 6to4
//!   IPv6 addresses are judged by the IPv4 address inside them.
//! - With the allowlist, only listed hosts (`host`, `*.domain`, either with
//!   `:port`) or listed addresses (`127.0.0.1`, `[::1]:8080`, `10.0.0.0/8`).
//!   Listing a *name* admits the name, not a forbidden address behind it:
//!   only an address entry admits a loopback or private address. That is
//!   what lets tests and development use `127.0.0.1`.
//!
//! Names are judged twice: when the request is created (every address the
//! name has must pass, else 422) and again at delivery, by the webhook
//! client's own resolver ([`VettingResolver`]), which drops forbidden
//! addresses, so a name that is re-pointed at 127.0.0.1 after the check
//! (DNS rebinding) cannot reach it. The webhook client follows no redirect.
//!
//! URLs the operator configures (Slack API, Teams service URLs) are trusted
//! configuration and are not judged here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

/// How long a create may wait for DNS before the URL is refused.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The webhook destinations an operator allows; the default is "any public host".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    /// `None`: any public host. `Some`: only these.
    allow: Option<Vec<Entry>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: EntryHost,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryHost {
    /// An exact name, lower-case, without a trailing dot.
    Name(String),
    /// `*.example.com` is kept as `.example.com`: any name below it.
    Below(String),
    /// An address or a CIDR block.
    Net(IpAddr, u8),
}

impl Destinations {
    /// Any public host.
    pub fn public() -> Self {
        Self::default()
    }

    /// A comma-separated allowlist: `host`, `*.domain`, `host:port`, IP
    /// literals (`127.0.0.1`, `[::1]:8080`) and CIDR blocks (`10.0.0.0/8`).
    pub fn allowlist(list: &str) -> Result<Self, String> {
        let entries = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Entry::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if entries.is_empty() {
            return Err("the webhook allowlist names no host".into());
        }
        Ok(Self {
            allow: Some(entries),
        })
    }

    pub fn is_allowlist(&self) -> bool {
        self.allow.is_some()
    }

    /// Everything that can be judged without DNS: the URL's shape, the
    /// allowlist, and the address when the host is an IP literal.
    pub fn judge(&self, raw: &str) -> Result<Target, String> {
        let url = Url::parse(raw).map_err(|e| format!("callback_url is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("callback_url must be an http or https URL".into());
        }
        // Never name the values: the password is what must not be echoed.
        if !url.username().is_empty() || url.password().is_some() {
            return Err("callback_url must not contain a user name or password; authenticate the webhook with its signature".into());
        }
        let port = url
            .port_or_known_default()
            .ok_or("callback_url has no port")?;
        let host = match url.host() {
            None => return Err("callback_url must be an http or https URL with a host".into()),
            Some(Host::Domain(d)) => TargetHost::Name(d.trim_end_matches('.').to_string()),
            Some(Host::Ipv4(a)) => TargetHost::Addr(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => TargetHost::Addr(IpAddr::V6(a)),
        };
        if let Some(entries) = &self.allow
            && !entries.iter().any(|e| e.admits_host(&host, port))
        {
            return Err(format!(
                "callback_url host {} is not on this server's webhook allowlist (COUNTERSIGN_WEBHOOK_ALLOWED_HOSTS)",
                host.display(port)
            ));
        }
        if let TargetHost::Addr(ip) = host {
            self.admits_addr(ip).map_err(|why| {
                format!(
                    "callback_url host {ip} is {why}; webhooks go only to public addresses{}",
                    self.hint()
                )
            })?;
        }
        Ok(Target { url, host, port })
    }

    /// [`judge`](Self::judge), then DNS: a name is refused unless every
    /// address it resolves to is admitted. Used when a request is created.
    pub async fn vet(&self, raw: &str) -> Result<Url, String> {
        let target = self.judge(raw)?;
        let TargetHost::Name(name) = &target.host else {
            return Ok(target.url);
        };
        let lookup = tokio::net::lookup_host((name.as_str(), target.port));
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(_)) => return Err(format!("callback_url host {name} does not resolve")),
            Err(_) => {
                return Err(format!(
                    "callback_url host {name} did not resolve within {} s",
                    RESOLVE_TIMEOUT.as_secs()
                ));
            }
        };
        if addrs.is_empty() {
            return Err(format!("callback_url host {name} does not resolve"));
        }
        for a in addrs {
            if let Err(why) = self.admits_addr(a.ip()) {
                return Err(format!(
                    "callback_url host {name} resolves to {}, {why}; webhooks go only to public addresses{}",
                    a.ip(),
                    self.hint()
                ));
            }
        }
        Ok(target.url)
    }

    /// Whether a connection may be made to `ip`: a public address, or one
    /// an address entry of the allowlist covers (on any port: the resolver
    /// that asks does not know the port; the URL's port was judged already).
    pub fn admits_addr(&self, ip: IpAddr) -> Result<(), &'static str> {
        let Some(why) = forbidden(ip) else {
            return Ok(());
        };
        let listed = self.allow.iter().flatten().any(|e| match e.host {
            EntryHost::Net(net, len) => in_net(ip, net, len),
            _ => false,
        });
        if listed { Ok(()) } else { Err(why) }
    }

    fn hint(&self) -> &'static str {
        if self.allow.is_some() {
            " or to addresses on the webhook allowlist"
        } else {
            ""
        }
    }
}

/// A URL that passed [`Destinations::judge`].
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Url,
    host: TargetHost,
    port: u16,
}

#[derive(Debug, Clone)]
enum TargetHost {
    Name(String),
    Addr(IpAddr),
}

impl TargetHost {
    fn display(&self, port: u16) -> String {
        match self {
            TargetHost::Name(n) => format!("{n}:{port}"),
            TargetHost::Addr(IpAddr::V6(a)) => format!("[{a}]:{port}"),
            TargetHost::Addr(a) => format!("{a}:{port}"),
        }
    }
}

impl Entry {
    fn parse(raw: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("webhook allowlist entry '{raw}': {why}");
        let s = raw.to_ascii_lowercase();
        if let Some((addr, len)) = s.split_once('/') {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| bad("a CIDR block is an IP address, '/', a prefix length"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| bad("the prefix length is out of range"))?;
            return Ok(Self {
                host: EntryHost::Net(addr, len),
                port: None,
            });
        }
        if let Ok(v6) = s.parse::<Ipv6Addr>() {
            return Ok(Self {
                host: EntryHost::Net(IpAddr::V6(v6), 128),
                port: None,
            });
        }
        // `[v6]:port`, `host:port` or a bare host.
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && (h.starts_with('[') == h.ends_with(']')) => {
                let p: u16 = p.parse().map_err(|_| bad("the port is not a number"))?;
                (h.to_string(), Some(p))
            }
            _ => (s.clone(), None),
        };
        if let Some(wild) = host.strip_prefix("*.") {
            let domain = match Host::parse(wild) {
                Ok(Host::Domain(d)) => d.trim_end_matches('.').to_string(),
                _ => return Err(bad("'*.' must be followed by a domain name")),
            };
            return Ok(Self {
                host: EntryHost::Below(format!(".{domain}")),
                port,
            });
        }
        let host = match Host::parse(&host).map_err(|e| bad(&e.to_string()))? {
            Host::Domain(d) if d.contains('*') => {
                return Err(bad("'*' is allowed only as '*.domain'"));
            }
            Host::Domain(d) => EntryHost::Name(d.trim_end_matches('.').to_string()),
            Host::Ipv4(a) => EntryHost::Net(IpAddr::V4(a), 32),
            Host::Ipv6(a) => EntryHost::Net(IpAddr::V6(a), 128),
        };
        Ok(Self { host, port })
    }

    fn admits_host(&self, host: &TargetHost, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.host, host) {
            (EntryHost::Name(n), TargetHost::Name(h)) => n == h,
            (EntryHost::Below(suffix), TargetHost::Name(h)) => h.ends_with(suffix.as_str()),
            (EntryHost::Net(net, len), TargetHost::Addr(ip)) => in_net(*ip, *net, *len),
            _ => false,
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    // An IPv4-mapped address is the IPv4 address for this purpose.
    let ip = canonical(ip);
    match (ip, canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = len.min(32) as u32;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128) as u32)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Why `ip` is not a public address, or `None` when it is.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(a: Ipv4Addr) -> Option<&'static str> {
    let net = |n: [u8; 4], len: u8| in_net(IpAddr::V4(a), IpAddr::V4(Ipv4Addr::from(n)), len);
    Some(if net([0, 0, 0, 0], 8) {
        "an unspecified address"
    } else if net([127, 0, 0, 0], 8) {
        "a loopback address"
    } else if net([10, 0, 0, 0], 8) || net([172, 16, 0, 0], 12) || net([192, 168, 0, 0], 16) {
        "a private address"
    } else if net([100, 64, 0, 0], 10) {
        "a shared (carrier-grade NAT) address"
    } else if net([169, 254, 0, 0], 16) {
        "a link-local address"
    } else if net([192, 0, 0, 0], 24) {
        "an IETF protocol address"
    } else if net([192, 0, 2, 0], 24) || net([198, 51, 100, 0], 24) || net([203, 0, 113, 0], 24) {
        "a documentation address"
    } else if net([198, 18, 0, 0], 15) {
        "a benchmarking address"
    } else if net([192, 88, 99, 0], 24) {
        "a 6to4 relay address"
    } else if net([224, 0, 0, 0], 4) {
        "a multicast address"
    } else if a == Ipv4Addr::BROADCAST {
        "the broadcast address"
    } else if net([240, 0, 0, 0], 4) {
        "a reserved address"
    } else {
        return None;
    })
}

fn forbidden_v6(a: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(a);
    let net = |n: u128, len: u32| bits & (u128::MAX << (128 - len)) == n;
    let v4_at = |shift: u32| Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32);
    if a.is_unspecified() {
        Some("an unspecified address")
    } else if a.is_loopback() {
        Some("a loopback address")
    } else if net(0xffff_0000_0000, 96) {
        // ::ffff:a.b.c.d, IPv4-mapped: the IPv4 address decides.
        forbidden_v4(v4_at(0))
    } else if net(0, 96) {
        // ::a.b.c.d, IPv4-compatible (deprecated; some stacks still map it).
        forbidden_v4(v4_at(0)).or(Some("an IPv4-compatible address"))
    } else if net(0xffff_0000_0000_0000, 96) {
        // ::ffff:0:a.b.c.d, IPv4-translated (SIIT).
        forbidden_v4(v4_at(0)).or(Some("an IPv4-translated address"))
    } else if net(0x0064_ff9b << 96, 96) {
        // 64:ff9b::a.b.c.d, NAT64: reaches the IPv4 address inside.
        forbidden_v4(v4_at(0))
    } else if net(0x0064_ff9b_0001 << 80, 48) {
        Some("a local-use NAT64 address")
    } else if net(0x2002 << 112, 16) {
        // 2002:AABB:CCDD::/48, 6to4: the IPv4 address is in bits 16..48.
        forbidden_v4(v4_at(80))
    } else if net(0x0100 << 112, 64) {
        Some("a discard address")
    } else if net(0x2001_0db8 << 96, 32) || net(0x3fff << 112, 20) {
        Some("a documentation address")
    } else if net(0x2001 << 112, 23) {
        // IETF assignments, Teredo among them (it tunnels to an IPv4 address).
        Some("an IETF protocol address")
    } else if net(0xfc << 120, 7) {
        Some("a unique-local address")
    } else if net(0xfe80 << 112, 10) {
        Some("a link-local address")
    } else if net(0xfec0 << 112, 10) {
        Some("a site-local address")
    } else if net(0xff << 120, 8) {
        Some("a multicast address")
    } else {
        None
    }
}

/// A URL for the audit trail: without any user name or password (a row
/// queued before userinfo was refused could still carry one).
pub fn redact(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => raw.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

/// The error the vetting resolver returns when a name has no admitted
/// address; the webhook deliverer finds it in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {addr}, {why}")]
pub struct ForbiddenAddress {
    pub host: String,
    pub addr: IpAddr,
    pub why: &'static str,
}

/// The webhook client's DNS resolver: resolves with the system resolver,
/// then keeps only admitted addresses, so what is connected to is what was
/// judged, whatever the name pointed at when the request was created.
pub struct VettingResolver {
    destinations: Destinations,
}

impl VettingResolver {
    pub fn new(destinations: Destinations) -> Self {
        Self { destinations }
    }
}

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let destinations = self.destinations.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let admitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match destinations.admits_addr(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert((a.ip(), why));
                        false
                    }
                })
                .collect();
            match (admitted.is_empty(), refused) {
                (true, Some((addr, why))) => Err(Box::new(ForbiddenAddress { host, addr, why })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(admitted.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The client that delivers webhooks: vetted DNS, no redirects, no proxy
/// from the environment (a proxy would connect on our behalf to whatever
/// address it resolves, out of the resolver's sight).
pub fn webhook_client(destinations: &Destinations) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(VettingResolver::new(destinations.clone())))
        .build()?)
}

/// The [`ForbiddenAddress`] somewhere in an error's chain, if any.
pub fn forbidden_in<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ForbiddenAddress> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(f) = e.downcast_ref::<ForbiddenAddress>() {
            return Some(f);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    fn refused(d: &Destinations, url: &str) -> String {
        d.judge(url).expect_err(url)
    }

    #[test]
    fn loopback_private_and_metadata_addresses_are_refused_in_every_spelling() {
        let d = Destinations::public();
        for url in [
            "http://127.0.0.1:8080/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
        ] {
            let why = refused(&d, url);
            assert!(why.contains("address"), "{url}: {why}");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_static_check() {
        let d = Destinations::public();
        for url in [
            "https://93.184.215.14/hook",
            "http://[2606:4700::1111]/",
            "http://[64:ff9b::808:808]/",
            "https://hooks.example.com/x",
        ] {
            assert!(d.judge(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn userinfo_is_refused_without_echoing_it() {
        let d = Destinations::public();
        for url in [
            "http://user:hunter2@example.com/",
            "http://hunter2@example.com/",
        ] {
            let why = refused(&d, url);
            assert!(!why.contains("hunter2"), "{why}");
            assert!(why.contains("user name or password"));
        }
    }

    #[test]
    fn other_schemes_are_refused() {
        let d = Destinations::public();
        for url in ["ftp://example.com/", "file:///etc/passwd", "gopher://x/"] {
            refused(&d, url);
        }
    }

    #[test]
    fn an_allowlist_admits_only_its_hosts_ports_and_addresses() {
        let d = Destinations::allowlist(
            "hooks.example.com, *.corp.example:8443, 127.0.0.1, [::1]:9000, 10.0.0.0/8",
        )
        .unwrap();
        assert!(d.judge("https://hooks.example.com/x").is_ok());
        assert!(d.judge("https://HOOKS.example.com./x").is_ok());
        assert!(d.judge("https://a.b.corp.example:8443/").is_ok());
        assert!(d.judge("https://corp.example:8443/").is_err());
        assert!(d.judge("https://a.corp.example/").is_err());
        assert!(d.judge("https://other.example.com/").is_err());
        assert!(d.judge("http://127.0.0.1:1234/").is_ok());
        assert!(d.judge("http://2130706433:1234/").is_ok());
        assert!(d.judge("http://127.0.0.2/").is_err());
        assert!(d.judge("http://[::1]:9000/").is_ok());
        assert!(d.judge("http://[::1]:9001/").is_err());
        assert!(d.judge("http://10.9.8.7/").is_ok());
        assert!(d.judge("http://localhost/").is_err());
        assert!(d.admits_addr("10.1.1.1".parse().unwrap()).is_ok());
        assert!(d.admits_addr("192.168.1.1".parse().unwrap()).is_err());
        assert!(d.admits_addr("8.8.8.8".parse().unwrap()).is_ok());
    }

    #[test]
    fn bad_allowlist_entries_are_refused_at_start() {
        for bad in [
            "",
            " , ",
            "a*b.example",
            "*.",
            "host:port",
            "10.0.0.0/33",
            "::1/200",
        ] {
            assert!(Destinations::allowlist(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redaction_removes_credentials_only() {
        assert_eq!(redact("http://u:p@example.com/x"), "http://example.com/x");
        assert_eq!(redact("http://example.com/x"), "http://example.com/x");
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_create() {
        let why = Destinations::public()
            .vet("http://localhost:8080/hook")
            .await
            .unwrap_err();
        assert!(why.contains("loopback"), "{why}");
        // Listing the name does not admit the loopback address behind it.
        let why = Destinations::allowlist("localhost")
            .unwrap()
            .vet("http://localhost:8080/hook")
            .await
            .unwrap_err();
        assert!(why.contains("loopback"), "{why}");
    }

    #[tokio::test]
    async fn the_delivery_resolver_drops_forbidden_addresses_unless_an_address_is_listed() {
        let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        let err = match VettingResolver::new(Destinations::allowlist("localhost").unwrap())
            .resolve(name())
            .await
        {
            Ok(_) => panic!("localhost was admitted"),
            Err(e) => e,
        };
        let f = forbidden_in(err.as_ref()).expect("a ForbiddenAddress");
        assert!(f.addr.is_loopback());
        let admitted: Vec<_> =
            VettingResolver::new(Destinations::allowlist("localhost, 127.0.0.1, ::1").unwrap())
                .resolve(name())
                .await
                .unwrap()
                .collect();
        assert!(!admitted.is_empty());
        assert!(admitted.iter().all(|a| a.ip().is_loopback()));
    }
}
