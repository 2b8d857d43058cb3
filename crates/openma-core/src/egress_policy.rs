//! What a sandbox may reach through its egress proxy (`openma_sandbox`'s, natively or on a
//! sandbox server): the session's [`EgressPolicy`] (which hosts), and the address rule
//! every policy shares (never loopback, private, link-local,
//! multicast or otherwise non-public space, so a sandbox can never reach the openma server,
//! its database, the cloud metadata service or the rest of the host's network).
//!
//! Decisions are made twice: on the host name the client asked for (the policy), then on
//! every address that name resolves to (the address rule); the proxy then connects to one of
//! the addresses it checked, so DNS cannot change the answer in between.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openma_types::agents::McpServer;
use openma_types::environments::Networking;
use serde::{Deserialize, Serialize};

/// The public package registries `allow_package_managers` opens, by manager. GitHub is
/// deliberately absent (allowing it would open every repository and release asset of every
/// user); an environment that needs it lists it in `allowed_hosts`.
pub const PACKAGE_REGISTRIES: &[&str] = &[
    // pip
    "pypi.org",
    "files.pythonhosted.org",
    // npm, yarn
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    // apt (Debian and Ubuntu mirrors)
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    // cargo
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    // gem
    "rubygems.org",
    "index.rubygems.org",
    // go (the module proxy and checksum database)
    "proxy.golang.org",
    "sum.golang.org",
];

/// Where a session's sandbox may connect to. Persisted with the session (its host dir), so
/// a sandbox restarted after idle reaping or a server restart gets the same policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EgressPolicy {
    /// No network at all: the sandbox has only its own loopback (no proxy, no bridge).
    #[default]
    None,
    /// Any host whose addresses are all public.
    Unrestricted,
    /// Only the listed hosts (and their addresses must be public too).
    Limited(LimitedEgress),
}

/// The hosts of a `limited` environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitedEgress {
    /// The environment's `allowed_hosts`: exact names, or `*.example.com` for its subdomains.
    pub allowed_hosts: Vec<String>,
    /// `allow_package_managers`: the [`PACKAGE_REGISTRIES`] too.
    pub package_managers: bool,
    /// With `allow_mcp_servers`: the hosts of the agent's MCP server URLs.
    pub mcp_hosts: Vec<String>,
}

/// Why a connection was refused: the host asked for and the rule that refused it, as shown
/// to the sandbox (a `403` body) and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub host: String,
    pub rule: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "openma egress proxy: connection to {} refused: {}", self.host, self.rule)
    }
}

impl EgressPolicy {
    /// The policy of a session whose environment has `networking` (`None`: no network):
    /// unrestricted, or limited to `allowed_hosts`, the package registries and, with
    /// `allow_mcp_servers`, the hosts of the agent's MCP server URLs.
    pub fn for_session(networking: Option<&Networking>, mcp_servers: &[McpServer]) -> EgressPolicy {
        match networking {
            None => EgressPolicy::None,
            Some(Networking::Unrestricted) => EgressPolicy::Unrestricted,
            Some(Networking::Limited(l)) => EgressPolicy::Limited(LimitedEgress {
                allowed_hosts: l.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                package_managers: l.allow_package_managers,
                mcp_hosts: if l.allow_mcp_servers { mcp_hosts(mcp_servers) } else { Vec::new() },
            }),
        }
    }

    /// Whether the sandbox gets a network path at all.
    pub fn has_network(&self) -> bool {
        !matches!(self, EgressPolicy::None)
    }

    /// The policy's word on a host name (lower case, no trailing dot), before resolution.
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        let refuse = |rule: String| Err(Refusal { host: host.to_owned(), rule });
        match self {
            EgressPolicy::None => refuse("this session's environment has no network access".into()),
            EgressPolicy::Unrestricted => Ok(()),
            EgressPolicy::Limited(l) => {
                if l.allowed_hosts.iter().any(|p| host_matches(host, p))
                    || (l.package_managers && PACKAGE_REGISTRIES.contains(&host))
                    || l.mcp_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
                {
                    Ok(())
                } else {
                    let mut also = Vec::new();
                    if l.package_managers {
                        also.push("the package registries");
                    }
                    if !l.mcp_hosts.is_empty() {
                        also.push("the agent's MCP servers");
                    }
                    let also = if also.is_empty() { String::new() } else { format!(" (nor among {})", also.join(" or ")) };
                    refuse(format!("networking is limited and the host is not in the environment's allowed_hosts{also}"))
                }
            }
        }
    }
}

/// `pattern` is an exact host name, or `*.example.com`: any subdomain of `example.com`
/// (not `example.com` itself).
pub fn host_matches(host: &str, pattern: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// Lower case, without a trailing dot or IPv6 brackets: the form hosts are compared in.
/// The hosts of the MCP servers' URLs, normalised and deduplicated.
fn mcp_hosts(servers: &[McpServer]) -> Vec<String> {
    let mut hosts: Vec<String> = servers.iter().filter_map(|s| url::Url::parse(&s.url).ok()?.host_str().map(normalize_host)).collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

pub fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// The class of a non-public address (why a sandbox may not reach it), or `None` for a
/// public one. IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are
/// judged by the address they embed.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => v4_class(a),
        IpAddr::V6(a) => v6_class(a),
    }
}

fn v4_class(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    Some(match o {
        [0, ..] => "an unspecified (\"this network\") address",
        [127, ..] => "a loopback address",
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => "a private address (RFC 1918)",
        [100, 64..=127, ..] => "a shared address (RFC 6598 carrier-grade NAT)",
        [169, 254, ..] => "a link-local address (this includes the cloud metadata service)",
        [192, 0, 0, _] => "an IETF protocol assignment address",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "a documentation address",
        [198, 18..=19, ..] => "a benchmarking address",
        [224..=239, ..] => "a multicast address",
        [240..=255, ..] => "a reserved or broadcast address",
        _ => return None,
    })
}

fn v6_class(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if a.is_loopback() {
        return Some("a loopback address");
    }
    if a.is_unspecified() {
        return Some("an unspecified address");
    }
    if let Some(v4) = a.to_ipv4_mapped() {
        return v4_class(v4);
    }
    Some(match s {
        // IPv4-compatible (deprecated) ::a.b.c.d
        [0, 0, 0, 0, 0, 0, hi, lo] => return v4_class(embedded(hi, lo)).or(Some("a deprecated IPv4-compatible address")),
        // NAT64 well-known prefix: the embedded IPv4 address is what gets reached
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return v4_class(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => "a local-use NAT64 address",
        // 6to4: the relay forwards to the embedded IPv4 address
        [0x2002, hi, lo, ..] => return v4_class(embedded(hi, lo)),
        [0x0100, 0, 0, 0, ..] => "a discard-only address",
        [0x2001, 0x0db8, ..] => "a documentation address",
        [x, ..] if x & 0xff00 == 0xff00 => "a multicast address",
        [x, ..] if x & 0xfe00 == 0xfc00 => "a private address (unique local, fc00::/7)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "a link-local address",
        [x, ..] if x & 0xffc0 == 0xfec0 => "a site-local address",
        _ => return None,
    })
}

/// Test-only resolution overrides, like curl's `--resolve`: names listed here resolve to
/// the given address (and port, if given) and are exempt from the address rule — only
/// they. Operators never need it; tests use it to stand fake "outside" servers on loopback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolveOverrides(HashMap<String, (IpAddr, Option<u16>)>);

impl ResolveOverrides {
    /// `name=ip[:port],name2=[v6]:port`.
    pub fn parse(spec: &str) -> Result<ResolveOverrides, String> {
        let mut map = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, addr) = item.split_once('=').ok_or_else(|| format!("`{item}` is not name=address[:port]"))?;
            let name = normalize_host(name.trim());
            let addr = addr.trim();
            let target = if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
                (sa.ip(), Some(sa.port()))
            } else {
                let ip = addr.trim_start_matches('[').trim_end_matches(']');
                (ip.parse::<IpAddr>().map_err(|_| format!("`{addr}` is not an IP address with an optional port"))?, None)
            };
            if name.is_empty() {
                return Err(format!("`{item}` names no host"));
            }
            map.insert(name, target);
        }
        Ok(ResolveOverrides(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The overridden address of `host` (normalised) for `port`.
    pub fn lookup(&self, host: &str, port: u16) -> Option<std::net::SocketAddr> {
        self.0.get(host).map(|(ip, p)| std::net::SocketAddr::new(*ip, p.unwrap_or(port)))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_hosts_are_the_url_hosts_normalised_once_each() {
        let servers: Vec<McpServer> = serde_json::from_value(serde_json::json!([
            {"type": "url", "name": "a", "url": "https://MCP.Example.com/sse"},
            {"type": "url", "name": "b", "url": "https://mcp.example.com:8443/other"},
            {"type": "url", "name": "c", "url": "http://[2001:db8::1]:9000/mcp"},
            {"type": "url", "name": "d", "url": "not a url"},
        ]))
        .unwrap();
        assert_eq!(mcp_hosts(&servers), vec!["2001:db8::1".to_string(), "mcp.example.com".to_string()]);
    }

    #[test]
    fn loopback_private_link_local_and_embedded_forms_are_forbidden() {
        for ip in [
            "127.0.0.1", "127.8.9.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
            "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.1", "::1", "::",
            "fd00::1", "fc12::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
            "::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "fec0::1",
        ] {
            assert!(forbidden_class(ip.parse().unwrap()).is_some(), "{ip} must be forbidden");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:1.1.1.1", "64:ff9b::101:101"] {
            assert_eq!(forbidden_class(ip.parse().unwrap()), None, "{ip} is public");
        }
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        assert!(host_matches("api.example.com", "*.example.com"));
        assert!(host_matches("a.b.example.com", "*.example.com"));
        assert!(host_matches("API.Example.com", "*.example.com"));
        assert!(!host_matches("example.com", "*.example.com"));
        assert!(!host_matches("badexample.com", "*.example.com"));
        assert!(host_matches("example.com", "example.com"));
        assert!(!host_matches("api.example.com", "example.com"));
        assert!(!host_matches("example.com.evil.net", "example.com"));
    }

    #[test]
    fn limited_allows_its_hosts_registries_and_mcp_hosts_only() {
        let p = EgressPolicy::Limited(LimitedEgress {
            allowed_hosts: vec!["api.example.com".into(), "*.cdn.example.net".into()],
            package_managers: true,
            mcp_hosts: vec!["mcp.example.org".into()],
        });
        for ok in ["api.example.com", "x.cdn.example.net", "pypi.org", "registry.npmjs.org", "mcp.example.org"] {
            assert_eq!(p.check_host(ok), Ok(()), "{ok}");
        }
        let r = p.check_host("evil.example").unwrap_err();
        assert!(r.rule.contains("allowed_hosts") && r.to_string().contains("evil.example"), "{r}");
        let bare = EgressPolicy::Limited(LimitedEgress { allowed_hosts: vec!["a.test".into()], ..Default::default() });
        assert!(bare.check_host("pypi.org").is_err());
        assert!(EgressPolicy::Unrestricted.check_host("anything.example").is_ok());
        assert!(EgressPolicy::None.check_host("a.test").is_err());
    }

    #[test]
    fn policies_round_trip_as_json() {
        let p = EgressPolicy::Limited(LimitedEgress { allowed_hosts: vec!["a.test".into()], package_managers: false, mcp_hosts: vec![] });
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<EgressPolicy>(&json).unwrap(), p);
        assert_eq!(serde_json::to_value(EgressPolicy::Unrestricted).unwrap(), serde_json::json!({"type": "unrestricted"}));
    }

    #[test]
    fn resolve_overrides_parse_like_curl_resolve() {
        let r = ResolveOverrides::parse("allowed.test=127.0.0.1:8080, other.test=10.0.0.1,v6.test=[::1]:9").unwrap();
        assert_eq!(r.lookup("allowed.test", 80), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(r.lookup("other.test", 443), Some("10.0.0.1:443".parse().unwrap()));
        assert_eq!(r.lookup("v6.test", 1), Some("[::1]:9".parse().unwrap()));
        assert_eq!(r.lookup("missing.test", 80), None);
        assert!(ResolveOverrides::parse("nonsense").is_err());
        assert!(ResolveOverrides::parse("a=not-an-ip").is_err());
        assert!(ResolveOverrides::parse("").unwrap().is_empty());
    }
}
