//! Requests the server makes to URLs its callers supply (webhook receivers, images to send):
//! only to public addresses, so a tenant key cannot turn the server into a way into the
//! network behind it (its own admin API, cloud metadata, a database's HTTP port).
//!
//! Two checks, both needed. When a URL is given, its host is checked as written (every
//! spelling of an address parses to the same `IpAddr`: `0x7f000001`, `2130706433` and `127.1`
//! are all 127.0.0.1) and its name resolved, so a bad URL is refused at once with a reason.
//! And every connection goes through [`GuardedResolver`], which drops refused addresses from
//! what a name resolves to *at connect time*: the address checked is the address connected
//! to, so a name that resolves to a public address when set and to a private one later (DNS
//! rebinding) still cannot reach it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;

/// A slow resolver must not hold a request for long: an unanswered name is left to the
/// connect-time check.
const SET_TIME_RESOLVE: Duration = Duration::from_secs(3);

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Loopback,
    Private,
    LinkLocal,
    SharedNat,
    UniqueLocal,
    Multicast,
    Unspecified,
    Broadcast,
    Documentation,
    Reserved,
}

impl AddressKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Loopback => "a loopback address",
            Self::Private => "a private network address",
            Self::LinkLocal => "a link-local address",
            Self::SharedNat => "a carrier-grade NAT address",
            Self::UniqueLocal => "a unique local (private IPv6) address",
            Self::Multicast => "a multicast address",
            Self::Unspecified => "the unspecified address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// The kind of a non-public address; `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<AddressKind> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressKind> {
    let [a, b, c, _] = ip.octets();
    let kind = if a == 127 {
        AddressKind::Loopback
    } else if a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) {
        AddressKind::Private
    } else if a == 169 && b == 254 {
        AddressKind::LinkLocal
    } else if a == 100 && (64..128).contains(&b) {
        AddressKind::SharedNat
    } else if ip.is_broadcast() {
        AddressKind::Broadcast
    } else if a == 0 && b == 0 && c == 0 && ip.octets()[3] == 0 {
        AddressKind::Unspecified
    } else if (224..240).contains(&a) {
        AddressKind::Multicast
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        AddressKind::Documentation
    } else if a == 0
        || a >= 240
        // IETF protocol assignments, the deprecated 6to4 relay, benchmarking.
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (b == 18 || b == 19))
    {
        AddressKind::Reserved
    } else {
        return None;
    };
    Some(kind)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressKind> {
    let s = ip.segments();
    // Forms that carry an IPv4 address are judged by that address: `::ffff:127.0.0.1`
    // reaches 127.0.0.1.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip.is_unspecified() {
        return Some(AddressKind::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddressKind::Loopback);
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4 (2002::/16) embeds its IPv4 gateway right after the prefix.
    if s[0] == 0x2002 {
        return classify_v4(embedded_v4(s[1], s[2]));
    }
    if (s[0] & 0xff00) == 0xff00 {
        return Some(AddressKind::Multicast);
    }
    if (s[0] & 0xfe00) == 0xfc00 {
        return Some(AddressKind::UniqueLocal);
    }
    if (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xffc0) == 0xfec0 {
        // Link-local, and the deprecated site-local.
        return Some(AddressKind::LinkLocal);
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some(AddressKind::Documentation);
    }
    // Only global unicast (2000::/3) is public, and not the special blocks inside it:
    // Teredo (2001::/32, which tunnels to IPv4), ORCHID and benchmarking.
    if (s[0] & 0xe000) != 0x2000
        || (s[0] == 0x2001 && s[1] == 0)
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010)
        || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0)
    {
        return Some(AddressKind::Reserved);
    }
    None
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Why a URL may not be fetched or posted to. The text completes "<field> …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("must be an http or https URL")]
    Scheme,
    #[error(
        "must not carry a user name or password (send credentials in the signature, not the URL)"
    )]
    Credentials,
    #[error(
        "points to {ip}, which is {}; only public addresses may be reached",
        .kind.describe()
    )]
    Address { ip: IpAddr, kind: AddressKind },
    #[error("names {host}, which is this machine; only public addresses may be reached")]
    LocalName { host: String },
    #[error(
        "names {host}, which resolves to {ip}, {}; only public addresses may be reached",
        .kind.describe()
    )]
    Resolved {
        host: String,
        ip: IpAddr,
        kind: AddressKind,
    },
}

/// Which addresses outbound requests may reach: public ones, and the networks the operator
/// listed with `--outbound-allow` (an on-premises back office on a private network).
#[derive(Clone, Default)]
pub struct OutboundPolicy {
    allow: Arc<[IpNet]>,
}

impl fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.allow.iter()).finish()
    }
}

impl OutboundPolicy {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: allow.into(),
        }
    }

    /// Whether this address may be connected to; the reason when not.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressKind> {
        // `::ffff:10.0.0.1` is allowed exactly when 10.0.0.1 is.
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return Ok(());
        }
        classify(canonical).map_or(Ok(()), Err)
    }

    /// What can be said of the URL without resolving its name: the scheme, no credentials,
    /// and a host that is not a refused address or this machine's own name. `Some(host)` when
    /// the host is a name still to resolve.
    pub fn check_written(&self, url: &Url) -> Result<Option<String>, Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        match url.host() {
            None => Err(Refusal::Scheme),
            Some(url::Host::Ipv4(v4)) => self.address(IpAddr::V4(v4)).map(|()| None),
            Some(url::Host::Ipv6(v6)) => self.address(IpAddr::V6(v6)).map(|()| None),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                // RFC 6761: these names are this machine whatever a resolver says, so they
                // are refused unless loopback is allowed (then they resolve as any name).
                let loopback_allowed = self.check_ip(Ipv4Addr::LOCALHOST.into()).is_ok()
                    || self.check_ip(Ipv6Addr::LOCALHOST.into()).is_ok();
                if (name == "localhost" || name.ends_with(".localhost")) && !loopback_allowed {
                    return Err(Refusal::LocalName { host: name });
                }
                Ok(Some(name))
            }
        }
    }

    fn address(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.check_ip(ip)
            .map_err(|kind| Refusal::Address { ip, kind })
    }

    /// [`check_written`](Self::check_written), then the addresses the name resolves to now:
    /// refused when none of them is allowed, as a connection would be. A name that does not
    /// resolve (yet, or offline) is accepted: the connection's own check refuses what it must.
    pub async fn check(&self, url: &Url) -> Result<(), Refusal> {
        let Some(host) = self.check_written(url)? else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let resolved = tokio::time::timeout(
            SET_TIME_RESOLVE,
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await;
        let Ok(Ok(addrs)) = resolved else {
            return Ok(());
        };
        let addrs: Vec<SocketAddr> = addrs.collect();
        self.filter(&host, addrs).map(|_| ())
    }

    /// The resolved addresses this policy allows; refused when none is (naming the first).
    fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        let mut first_refused = None;
        let mut allowed = Vec::with_capacity(addrs.len());
        for a in addrs {
            match self.check_ip(a.ip()) {
                Ok(()) => allowed.push(a),
                Err(kind) => {
                    first_refused.get_or_insert((a.ip(), kind));
                }
            }
        }
        match first_refused {
            Some((ip, kind)) if allowed.is_empty() => Err(Refusal::Resolved {
                host: host.to_owned(),
                ip,
                kind,
            }),
            _ => Ok(allowed),
        }
    }

    /// An HTTP client that connects only where this policy allows: names resolve through
    /// [`GuardedResolver`], and no proxy from the environment is used (a proxy would resolve
    /// and connect on our behalf, out of the resolver's sight). Literal addresses in URLs do
    /// not go through a resolver: callers check each URL with [`check_written`]
    /// (Self::check_written) before each request.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder.no_proxy().dns_resolver(Arc::new(GuardedResolver {
            policy: self.clone(),
        }))
    }
}

/// A resolver that answers only with addresses the policy allows: a refused address is never
/// handed to the connector, whatever the name resolved to when it was set.
pub struct GuardedResolver {
    policy: OutboundPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            match policy.filter(&host, addrs) {
                Ok(allowed) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                Err(refusal) => Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// The policy's refusal behind a failed request, if that is why it failed.
pub fn refusal_of(e: &reqwest::Error) -> Option<Refusal> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return Some(r.clone());
        }
        source = err.source();
    }
    None
}

/// `--outbound-allow`: a network (`10.0.0.0/8`, `fd00::/8`) or a single address.
pub fn parse_allowed(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("{s:?} is not an address or a network such as 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn every_spelling_of_a_local_address_is_refused() {
        let p = OutboundPolicy::default();
        for raw in [
            "http://127.0.0.1:5000/api/admin/keys",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a00:1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://100.64.0.1/",
            "http://192.168.1.1/",
            "http://172.31.255.255/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            let r = p.check_written(&url(raw));
            assert!(
                matches!(r, Err(Refusal::Address { .. })),
                "{raw} was not refused: {r:?}"
            );
        }
    }

    #[test]
    fn local_names_and_credentials_are_refused_without_resolving() {
        let p = OutboundPolicy::default();
        for raw in [
            "http://localhost:5000/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            assert!(
                matches!(p.check_written(&url(raw)), Err(Refusal::LocalName { .. })),
                "{raw}"
            );
        }
        assert_eq!(
            p.check_written(&url("https://user:pass@example.com/hook")),
            Err(Refusal::Credentials)
        );
        assert_eq!(
            p.check_written(&url("https://user@example.com/hook")),
            Err(Refusal::Credentials)
        );
        assert_eq!(
            p.check_written(&url("ftp://example.com/")),
            Err(Refusal::Scheme)
        );
    }

    #[test]
    fn public_addresses_and_names_pass_the_written_check() {
        let p = OutboundPolicy::default();
        assert_eq!(p.check_written(&url("https://8.8.8.8/x")), Ok(None));
        assert_eq!(
            p.check_written(&url("https://[2606:4700:4700::1111]/x")),
            Ok(None)
        );
        assert_eq!(
            p.check_written(&url("https://Example.COM/hook")),
            Ok(Some("example.com".into()))
        );
    }

    #[test]
    fn the_allow_list_opens_exactly_its_networks() {
        let p = OutboundPolicy::new(vec![
            parse_allowed("10.1.0.0/16").unwrap(),
            parse_allowed("127.0.0.1").unwrap(),
        ]);
        assert!(p.check_ip("10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.check_ip("::ffff:10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(
            p.check_ip("127.0.0.2".parse().unwrap()),
            Err(AddressKind::Loopback)
        );
        assert_eq!(
            p.check_ip("10.2.0.1".parse().unwrap()),
            Err(AddressKind::Private)
        );
        assert_eq!(
            p.check_written(&url("http://localhost:8080/hook")),
            Ok(Some("localhost".into())),
            "allowed loopback makes localhost a name to resolve"
        );
        assert!(parse_allowed("not-a-net").is_err());
        assert!(parse_allowed("10.0.0.0/33").is_err());
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(classify(ip.parse().unwrap()), None, "{ip}");
        }
        for ip in ["2001:db8::1", "ff02::1", "2001::1", "100::1", "::127.0.0.1"] {
            assert!(classify(ip.parse().unwrap()).is_some(), "{ip}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_of_a_refused_address_at_connect_time() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        // `localhost` resolves from the hosts file on any machine, without a network.
        let name = || reqwest::dns::Name::from_str("localhost").unwrap();
        let guarded = GuardedResolver {
            policy: OutboundPolicy::default(),
        };
        let err = match guarded.resolve(name()).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let refusal = err.downcast_ref::<Refusal>().expect("a policy refusal");
        assert!(matches!(
            refusal,
            Refusal::Resolved {
                kind: AddressKind::Loopback,
                ..
            }
        ));

        // Allowing one loopback family hands only that family's addresses to the connector.
        let allowed = GuardedResolver {
            policy: OutboundPolicy::new(vec![parse_allowed("127.0.0.0/8").unwrap()]),
        };
        let addrs: Vec<SocketAddr> = allowed.resolve(name()).await.unwrap().collect();
        assert!(!addrs.is_empty(), "localhost resolves to 127.0.0.1");
        assert!(
            addrs
                .iter()
                .all(|a| a.ip() == IpAddr::from(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }
}
