//! Address safety: which IP addresses a URL from an untrusted list may reach.
//!
//! - [`non_public_range`]: the classifier. `None` for a public unicast address, otherwise the name
//!   of the special-purpose range the address falls in (loopback, RFC 1918, link-local with the
//!   cloud metadata endpoint 169.254.169.254, CGNAT, documentation, multicast, IPv6 unique-local …).
//!   IPv4 addresses embedded in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
//!   `2002::/16`) are classified by their IPv4 address; IPv4-compatible `::a.b.c.d` is deprecated
//!   and always refused.
//! - [`AddressPolicy`]: the classifier plus the configuration (`allow_private_addresses`,
//!   `allowed_networks`); used for literal IPs in URLs before connecting.
//! - [`GuardedResolver`]: a reqwest DNS resolver that resolves with the system resolver and drops
//!   every address the policy refuses, so a hostname that resolves (or is rebound) to 127.0.0.1 is
//!   never connected to. When nothing is left it fails with [`BlockedHost`], which the fetcher
//!   finds in the error's source chain and reports as `blocked_address`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A named IPv4 range.
struct V4Range {
    net: Ipv4Net,
    name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, name: &'static str) -> V4Range {
    V4Range {
        net: Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len),
        name,
    }
}

/// IPv4 special-purpose ranges (IANA registry) that an image URL must never reach. Checked in
/// order: the first match names the range, so the more specific entries come first.
const V4_BLOCKED: &[V4Range] = &[
    v4(0, 0, 0, 0, 32, "unspecified (0.0.0.0)"),
    v4(0, 0, 0, 0, 8, "\"this network\" (0.0.0.0/8)"),
    v4(10, 0, 0, 0, 8, "private (10.0.0.0/8, RFC 1918)"),
    v4(
        100,
        64,
        0,
        0,
        10,
        "shared address space / CGNAT (100.64.0.0/10)",
    ),
    v4(127, 0, 0, 0, 8, "loopback (127.0.0.0/8)"),
    v4(
        169,
        254,
        0,
        0,
        16,
        "link-local (169.254.0.0/16, includes cloud metadata 169.254.169.254)",
    ),
    v4(172, 16, 0, 0, 12, "private (172.16.0.0/12, RFC 1918)"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments (192.0.0.0/24)"),
    v4(192, 0, 2, 0, 24, "documentation (192.0.2.0/24, TEST-NET-1)"),
    v4(
        192,
        88,
        99,
        0,
        24,
        "deprecated 6to4 relay anycast (192.88.99.0/24)",
    ),
    v4(192, 168, 0, 0, 16, "private (192.168.0.0/16, RFC 1918)"),
    v4(198, 18, 0, 0, 15, "benchmarking (198.18.0.0/15)"),
    v4(
        198,
        51,
        100,
        0,
        24,
        "documentation (198.51.100.0/24, TEST-NET-2)",
    ),
    v4(
        203,
        0,
        113,
        0,
        24,
        "documentation (203.0.113.0/24, TEST-NET-3)",
    ),
    v4(224, 0, 0, 0, 4, "multicast (224.0.0.0/4)"),
    v4(255, 255, 255, 255, 32, "broadcast (255.255.255.255)"),
    v4(240, 0, 0, 0, 4, "reserved (240.0.0.0/4)"),
];

/// A named IPv6 range.
struct V6Range {
    net: Ipv6Net,
    name: &'static str,
}

const fn v6(segments: [u16; 8], len: u8, name: &'static str) -> V6Range {
    let [a, b, c, d, e, f, g, h] = segments;
    V6Range {
        net: Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len),
        name,
    }
}

/// IPv6 ranges refused outright (the IPv4-embedding ranges are handled before this list).
const V6_BLOCKED: &[V6Range] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified (::)"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback (::1)"),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-compatible IPv6 (::/96, deprecated)",
    ),
    v6(
        [0x0064, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    v6([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (100::/64)"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (fc00::/7)"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (fe80::/10)"),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local (fec0::/10, deprecated)",
    ),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (ff00::/8)"),
    v6(
        [0x2001, 0x0db8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation (2001:db8::/32)",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation (3fff::/20)",
    ),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo (2001::/32)"),
    v6(
        [0x2001, 0x0002, 0, 0, 0, 0, 0, 0],
        48,
        "benchmarking (2001:2::/48)",
    ),
    v6(
        [0x2001, 0x0010, 0, 0, 0, 0, 0, 0],
        28,
        "ORCHID (2001:10::/28, deprecated)",
    ),
];

/// Global unicast space (`2000::/3`): every public IPv6 address today lies inside it.
const V6_GLOBAL_UNICAST: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`): the socket connects to the IPv4 address.
const V6_MAPPED: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
/// Well-known NAT64 prefix (`64:ff9b::/96`): the gateway connects to the embedded IPv4 address.
const V6_NAT64: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
/// 6to4 (`2002::/16`): bits 16..48 carry an IPv4 address.
const V6_6TO4: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);

/// The special-purpose range `ip` falls in, or `None` when it is a public unicast address that a
/// downloader may connect to.
pub fn non_public_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => non_public_v4(ip),
        IpAddr::V6(ip) => non_public_v6(ip),
    }
}

/// `true` when [`non_public_range`] finds nothing to object to.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_range(ip).is_none()
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    V4_BLOCKED
        .iter()
        .find(|r| r.net.contains(&ip))
        .map(|r| r.name)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    // Forms that reach an IPv4 address: judge them by that address.
    if V6_MAPPED.contains(&ip) || V6_NAT64.contains(&ip) {
        return non_public_v4(Ipv4Addr::from((bits & 0xffff_ffff) as u32));
    }
    if V6_6TO4.contains(&ip) {
        return non_public_v4(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    if let Some(r) = V6_BLOCKED.iter().find(|r| r.net.contains(&ip)) {
        return Some(r.name);
    }
    if !V6_GLOBAL_UNICAST.contains(&ip) {
        return Some("not global unicast (outside 2000::/3)");
    }
    None
}

/// Which addresses the fetcher may connect to: public ones, plus whatever the configuration opens.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Skip all checks (tests on 127.0.0.1, trusted internal lists).
    pub allow_private: bool,
    /// Networks allowed even though they are not public (an internal mirror, say).
    pub allowed_networks: Vec<IpNet>,
}

impl AddressPolicy {
    /// `Ok` when `ip` may be connected to, else the name of the range that refuses it.
    /// `allow_private` opens every non-public range but link-local, which holds the cloud
    /// metadata endpoint (169.254.169.254, with credentials behind it): only a network named in
    /// `allowed_networks` opens that.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allowed_networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match non_public_range(ip) {
            None => Ok(()),
            Some(range) if range.starts_with("link-local") => Err(range),
            Some(_) if self.allow_private => Ok(()),
            Some(range) => Err(range),
        }
    }
}

/// The resolver found addresses for a host, but the policy refused every one of them.
#[derive(Debug, Clone)]
pub struct BlockedHost {
    /// The host name as resolved.
    pub host: String,
    /// Each refused address with the range that refused it.
    pub refused: Vec<(IpAddr, &'static str)>,
}

impl fmt::Display for BlockedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} resolves only to non-public addresses: ", self.host)?;
        for (i, (ip, range)) in self.refused.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{ip} is {range}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BlockedHost {}

/// A reqwest DNS resolver that only ever hands out addresses the [`AddressPolicy`] allows.
///
/// Resolution itself is the system resolver's (`getaddrinfo` on a blocking thread, as reqwest's
/// default); the filtering happens on the result, right before the connector uses it, so there is
/// no window between the check and the connection for a rebinding DNS server to exploit.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::with_capacity(resolved.len());
            let mut refused = Vec::new();
            for addr in resolved {
                match policy.check(addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(range) => refused.push((addr.ip(), range)),
                }
            }
            if allowed.is_empty() && !refused.is_empty() {
                return Err(Box::new(BlockedHost { host, refused })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Option<&'static str> {
        non_public_range(s.parse().unwrap())
    }

    #[track_caller]
    fn blocked(s: &str, expect: &str) {
        match range(s) {
            Some(name) => assert!(
                name.contains(expect),
                "{s}: range {name:?} does not mention {expect:?}"
            ),
            None => panic!("{s} should be non-public ({expect})"),
        }
    }

    #[track_caller]
    fn public(s: &str) {
        assert_eq!(range(s), None, "{s} should be public");
    }

    #[test]
    fn ipv4_special_ranges_are_refused() {
        blocked("0.0.0.0", "unspecified");
        blocked("0.1.2.3", "this network");
        blocked("10.0.0.1", "RFC 1918");
        blocked("10.255.255.255", "RFC 1918");
        blocked("172.16.0.1", "RFC 1918");
        blocked("172.31.255.254", "RFC 1918");
        blocked("192.168.1.1", "RFC 1918");
        blocked("100.64.0.1", "CGNAT");
        blocked("100.127.255.255", "CGNAT");
        blocked("127.0.0.1", "loopback");
        blocked("127.255.255.254", "loopback");
        blocked("169.254.169.254", "link-local");
        blocked("169.254.0.1", "link-local");
        blocked("192.0.0.8", "IETF");
        blocked("192.0.2.10", "documentation");
        blocked("198.51.100.7", "documentation");
        blocked("203.0.113.200", "documentation");
        blocked("192.88.99.1", "6to4 relay");
        blocked("198.18.0.1", "benchmarking");
        blocked("198.19.255.255", "benchmarking");
        blocked("224.0.0.1", "multicast");
        blocked("239.255.255.250", "multicast");
        blocked("240.0.0.1", "reserved");
        blocked("255.255.255.255", "broadcast");
    }

    #[test]
    fn ipv4_public_neighbours_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            public(ip);
        }
    }

    #[test]
    fn ipv6_special_ranges_are_refused() {
        blocked("::", "unspecified");
        blocked("::1", "loopback");
        blocked("fc00::1", "unique local");
        blocked("fd12:3456:789a::1", "unique local");
        blocked("fe80::1", "link-local");
        blocked("febf:ffff::1", "link-local");
        blocked("fec0::1", "site-local");
        blocked("ff02::1", "multicast");
        blocked("2001:db8::1", "documentation");
        blocked("3fff:0fff::1", "documentation");
        blocked("100::1", "discard");
        blocked("2001::1", "Teredo");
        blocked("2001:2::1", "benchmarking");
        blocked("64:ff9b:1::1", "NAT64");
        blocked("4000::1", "not global unicast");
    }

    #[test]
    fn ipv4_embedded_in_ipv6_is_judged_by_the_ipv4_address() {
        // IPv4-mapped forms of every kind of IPv4 range.
        blocked("::ffff:127.0.0.1", "loopback");
        blocked("::ffff:10.1.2.3", "RFC 1918");
        blocked("::ffff:172.16.5.4", "RFC 1918");
        blocked("::ffff:192.168.0.1", "RFC 1918");
        blocked("::ffff:169.254.169.254", "link-local");
        blocked("::ffff:100.64.1.1", "CGNAT");
        blocked("::ffff:0.0.0.0", "unspecified");
        blocked("::ffff:255.255.255.255", "broadcast");
        blocked("::ffff:224.0.0.1", "multicast");
        blocked("::ffff:192.0.2.1", "documentation");
        public("::ffff:8.8.8.8");
        // IPv4-compatible (deprecated): refused whatever the IPv4 part.
        blocked("::127.0.0.1", "IPv4-compatible");
        blocked("::169.254.169.254", "IPv4-compatible");
        blocked("::8.8.8.8", "IPv4-compatible");
        // NAT64 and 6to4 reach the embedded IPv4 address.
        blocked("64:ff9b::7f00:1", "loopback");
        blocked("64:ff9b::a9fe:a9fe", "link-local");
        public("64:ff9b::808:808");
        blocked("2002:7f00:0001::1", "loopback");
        blocked("2002:c0a8:0101::1", "RFC 1918");
        public("2002:0808:0808::1");
    }

    #[test]
    fn ipv6_public_addresses_pass() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:80b::200e",
            "2001:db9::1",
        ] {
            public(ip);
        }
    }

    #[test]
    fn policy_allows_everything_or_listed_networks() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other_lo: IpAddr = "127.0.0.2".parse().unwrap();
        let strict = AddressPolicy::default();
        assert!(strict.check(lo).is_err());
        let open = AddressPolicy {
            allow_private: true,
            ..AddressPolicy::default()
        };
        assert!(open.check(lo).is_ok());
        // Not the metadata endpoint's range: that needs its network named.
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(open.check(metadata).unwrap_err().starts_with("link-local"));
        let named = AddressPolicy {
            allow_private: true,
            allowed_networks: vec!["169.254.169.254/32".parse().unwrap()],
        };
        assert!(named.check(metadata).is_ok());
        let listed = AddressPolicy {
            allow_private: false,
            allowed_networks: vec!["127.0.0.1/32".parse().unwrap()],
        };
        assert!(listed.check(lo).is_ok());
        assert_eq!(listed.check(other_lo), Err("loopback (127.0.0.0/8)"));
        assert!(listed.check("8.8.8.8".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn resolver_drops_non_public_addresses_of_localhost() {
        let resolver = GuardedResolver::new(Arc::new(AddressPolicy::default()));
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let blocked = err
            .downcast_ref::<BlockedHost>()
            .expect("a BlockedHost error");
        assert_eq!(blocked.host, "localhost");
        assert!(
            blocked.refused.iter().all(|(ip, _)| ip.is_loopback()),
            "{blocked}"
        );

        let open = GuardedResolver::new(Arc::new(AddressPolicy {
            allow_private: true,
            ..AddressPolicy::default()
        }));
        let addrs: Vec<_> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()));
    }
}
