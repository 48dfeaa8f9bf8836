//! Who is calling, as far as the network tells: the client's address behind trusted reverse
//! proxies, the bucket a throttle keys it on, and whether it came over https.
//!
//! Behind a proxy every TCP peer is the proxy, so the real client comes from `Forwarded` or
//! `X-Forwarded-For` — but only when the peer is one of the operator's trusted proxies
//! (`KEYWARD_TRUSTED_PROXIES`), and then the client is the rightmost hop that is not itself a
//! trusted proxy: everything left of it was written by the client and proves nothing.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The caller's network identity, put on every request by [`layer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address (the TCP peer, or the hop a trusted proxy named).
    pub ip: IpAddr,
    /// The key throttles use: the address itself for IPv4, its /64 for IPv6 (one subscriber
    /// usually holds a whole /64 and could rotate through it).
    pub bucket: IpAddr,
    /// Whether the request reached the first proxy (or Keyward) over https.
    pub https: bool,
}

/// The operator's trusted reverse proxies.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR ranges (`10.0.0.0/8, ::1`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let nets = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{e:?} is not an address or CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies(Arc::new(nets)))
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer`, from the forwarding headers when `peer` is trusted.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let peer = canonical(peer);
        let mut https = false;
        let mut ip = peer;
        if self.trusts(peer) {
            let hops = forwarded_for(headers);
            // Walk from the proxy outwards; stop at the first hop we do not trust.
            for hop in hops.iter().rev() {
                match hop {
                    Some(h) => {
                        ip = canonical(*h);
                        if !self.trusts(ip) {
                            break;
                        }
                    }
                    // An unreadable hop: nothing left of it can be believed.
                    None => break,
                }
            }
            https = forwarded_proto(headers).is_some_and(|p| p.eq_ignore_ascii_case("https"));
        }
        ClientAddr {
            ip,
            bucket: bucket(ip),
            https,
        }
    }
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The throttle key of an address: IPv4 as is, IPv6 cut to its /64.
pub fn bucket(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The hops a request passed, oldest first: RFC 7239 `Forwarded: for=…` when present,
/// otherwise `X-Forwarded-For`. `None` marks a hop that is not an address (`unknown`, an
/// obfuscated name, garbage).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| node_ip(v.trim().trim_matches('"')))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| node_ip(hop.trim()))
        .collect()
}

/// An address from a forwarding header: `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:80`, `::1`.
fn node_ip(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    node.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

fn forwarded_proto(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("forwarded").and_then(|v| v.to_str().ok()) {
        // The first proxy's element: the scheme the client used.
        let first = v.split(',').next().unwrap_or("");
        if let Some((_, p)) = first
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
        {
            return Some(p.trim().trim_matches('"').to_string());
        }
    }
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
}

/// Middleware: works out the [`ClientAddr`] once and puts it on the request.
pub async fn layer(
    State(proxies): State<TrustedProxies>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let client = proxies.client(peer, req.headers());
        req.extensions_mut().insert(client);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        let spoof = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        // An untrusted peer: the headers are the client's own words.
        let c = proxies.client(ip("203.0.113.9"), &spoof);
        assert_eq!((c.ip, c.https), (ip("203.0.113.9"), false));
        // A trusted proxy: the rightmost untrusted hop. Hops left of it were client-written.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &h).ip, ip("198.51.100.7"));
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.8"),
        ]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &h).ip, ip("198.51.100.8"));
        // RFC 7239 wins over X-Forwarded-For, with ports, quotes and IPv6 brackets.
        let h = headers(&[
            (
                "forwarded",
                "for=6.6.6.6;proto=https, for=\"[2001:db8:1:2::7]:4711\"",
            ),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        let c = proxies.client(ip("10.0.0.1"), &h);
        assert_eq!(c.ip, ip("2001:db8:1:2::7"));
        assert!(c.https, "the first proxy saw https");
        // An unreadable hop stops the walk at the last trusted address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, garbage, 10.9.9.9")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &h).ip, ip("10.9.9.9"));
        // No headers behind a trusted proxy: the proxy itself.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &HeaderMap::new()).ip,
            ip("10.0.0.1")
        );
        // Nothing trusted by default.
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("127.0.0.1"), &spoof).ip, ip("127.0.0.1"));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.example").is_err());
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        assert_eq!(bucket(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            bucket(ip("2001:db8:1:2:ffff::9")),
            bucket(ip("2001:db8:1:2::1"))
        );
        assert_ne!(bucket(ip("2001:db8:1:3::1")), bucket(ip("2001:db8:1:2::1")));
        assert_eq!(bucket(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(bucket(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
