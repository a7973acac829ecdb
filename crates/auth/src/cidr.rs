//! CIDR blocks for per-key IP allow-lists and the trusted-proxy list (issue 5).
//!
//! Accepted forms: `203.0.113.0/24`, `2001:db8::/32`, or a single address (`/32` or `/128`
//! implied). Host bits are ignored (`203.0.113.7/24` contains `203.0.113.1`). IPv4-mapped IPv6
//! client addresses (`::ffff:203.0.113.7`) are matched as IPv4.

use std::net::IpAddr;

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR block (expected e.g. 203.0.113.0/24 or 2001:db8::/32)")]
pub struct CidrError;

impl Cidr {
    /// Parses `addr` or `addr/prefix` (prefix ≤ 32 for IPv4, ≤ 128 for IPv6).
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p.parse::<u8>().map_err(|_| CidrError)?,
            Some(_) => return Err(CidrError),
        };
        if prefix > max {
            return Err(CidrError);
        }
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

/// Why an upstream address of a team's REST service is refused (SSRF guard, tester H4), or
/// `None` when it may be reached: loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16 incl.
/// cloud metadata, fe80::/10), unspecified (0.0.0.0/8, ::), multicast, broadcast
/// (255.255.255.255). IPv4-mapped IPv6 addresses are judged as IPv4. Private ranges (RFC 1918,
/// fc00::/7) are allowed. An address inside one of `allow` (the operator's
/// `[rest] allow_upstream`) is always allowed.
pub fn refused_upstream(ip: IpAddr, allow: &[Cidr]) -> Option<&'static str> {
    if allow.iter().any(|c| c.contains(ip)) {
        return None;
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("multicast"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("multicast"),
        _ => None,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// Whether any block of `list` contains `ip`.
pub fn any_contains(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

/// The client address of a request: the socket peer, unless the peer is a trusted proxy, in
/// which case `X-Forwarded-For` is read right to left and the first address that is not a
/// trusted proxy is the client (a client cannot forge entries to the right of what its own
/// proxy appended). Unparseable entries end the walk at the last trusted hop.
pub fn client_ip<'a>(peer: Option<IpAddr>, forwarded_for: impl Iterator<Item = &'a str>, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?;
    if !any_contains(trusted, peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).map(str::trim).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !any_contains(trusted, ip) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_matches_v4_and_v6() {
        let net = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(net.contains(ip("203.0.113.255")));
        assert!(net.contains(ip("::ffff:203.0.113.9")));
        assert!(!net.contains(ip("203.0.114.1")));
        assert!(!net.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.3")));
        assert!(!Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.4")));
        assert!(Cidr::parse("10.0.0.0/9").unwrap().contains(ip("10.127.0.1")));
        assert!(!Cidr::parse("10.0.0.0/9").unwrap().contains(ip("10.128.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "x", "10.0.0.0/+8", "10.0.0.0/08a"] {
            assert_eq!(Cidr::parse(bad), Err(CidrError), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_only_trusted_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        // direct client: XFF ignored (it could be forged)
        assert_eq!(client_ip(Some(ip("198.51.100.4")), ["1.2.3.4"].into_iter(), &trusted), Some(ip("198.51.100.4")));
        // via our proxy: the rightmost untrusted hop is the client; a forged left entry is ignored
        assert_eq!(client_ip(Some(ip("10.0.0.2")), ["1.2.3.4, 198.51.100.4"].into_iter(), &trusted), Some(ip("198.51.100.4")));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), ["1.2.3.4", "198.51.100.4, 10.0.0.9"].into_iter(), &trusted), Some(ip("198.51.100.4")));
        // garbage stops the walk at the last trusted hop
        assert_eq!(client_ip(Some(ip("10.0.0.2")), ["nonsense"].into_iter(), &trusted), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(None, [].into_iter(), &trusted), None);
    }

    #[test]
    fn upstream_guard_refuses_loopback_link_local_unspecified_multicast_but_not_private() {
        for a in ["127.0.0.1", "127.8.9.1", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "::ffff:127.0.0.1", "::ffff:169.254.169.254"] {
            assert!(refused_upstream(ip(a), &[]).is_some(), "{a}");
        }
        for a in ["10.0.0.1", "172.16.5.5", "192.168.1.1", "fd00::1", "203.0.113.7", "2001:db8::1"] {
            assert_eq!(refused_upstream(ip(a), &[]), None, "{a}");
        }
        let allow = [Cidr::parse("127.0.0.0/8").unwrap()];
        assert_eq!(refused_upstream(ip("127.0.0.1"), &allow), None);
        assert_eq!(refused_upstream(ip("::ffff:127.0.0.1"), &allow), None);
        assert_eq!(refused_upstream(ip("::1"), &allow), Some("loopback"));
        assert_eq!(refused_upstream(ip("169.254.169.254"), &allow), Some("link-local"));
    }
}
