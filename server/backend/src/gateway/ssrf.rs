//! Where a provider key may be sent (SECURITY.md "SSRF").
//!
//! A base URL must be https to a public address. The operator's allowlist (never a workspace
//! setting) opens exact `host:port` pairs, which may then be plain http or private — a local model
//! server, or the mock provider in tests. Host names are checked again at connection time: the
//! client's resolver refuses a name if *any* of its addresses is not public (DNS rebinding), so a
//! request only ever connects to an address that was checked.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Why a base URL was refused. The message never contains a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the base URL is not a valid URL")]
    Malformed,
    #[error("the base URL must start with https://")]
    NotHttps,
    #[error("the base URL must not contain a user name or password")]
    Userinfo,
    #[error("the base URL must not contain a query or fragment")]
    QueryOrFragment,
    #[error("the base URL points to a private, local or reserved address, which is not allowed")]
    NonPublic,
}

/// The operator's exceptions: exact host and port pairs that may be private or plain http, and
/// whether plain http is allowed at all for public hosts.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    entries: Arc<Vec<(String, u16)>>,
    allow_http: bool,
}

impl Allowlist {
    pub fn new(entries: Vec<(String, u16)>) -> Self {
        Allowlist {
            entries: Arc::new(entries),
            allow_http: false,
        }
    }

    /// Also allows plain http to public addresses (an operator setting).
    pub fn with_http(mut self, allow_http: bool) -> Self {
        self.allow_http = allow_http;
        self
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|(h, p)| *h == host && *p == port)
    }

    /// Whether the resolver may return private addresses for `host`. Only the pinned client of
    /// an exact allowlisted `host:port` holds such an allowlist (see `Gateway::client_for`).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|(h, _)| *h == host)
    }

    pub fn entries(&self) -> &[(String, u16)] {
        &self.entries
    }
}

/// Checks a base URL and returns it normalised (no trailing slash). The WHATWG parser behind
/// `url` already turns `0x7f.1`, `2130706433`, `0177.0.0.1` and `127.1` into `127.0.0.1`, so the
/// address checks below see every spelling in canonical form.
pub fn check_base_url(raw: &str, allow: &Allowlist) -> Result<String, UrlError> {
    let url = url::Url::parse(raw.trim()).map_err(|_| UrlError::Malformed)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Userinfo);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError::QueryOrFragment);
    }
    let host = url.host().ok_or(UrlError::Malformed)?;
    let port = url.port_or_known_default().ok_or(UrlError::Malformed)?;
    let host_text = match &host {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => a.to_string(),
    };
    let allowlisted = allow.allows(&host_text, port);
    match url.scheme() {
        "https" => {}
        "http" if allowlisted || allow.allow_http => {}
        _ => return Err(UrlError::NotHttps),
    }
    if !allowlisted {
        let public = match host {
            url::Host::Ipv4(a) => is_public_v4(a),
            url::Host::Ipv6(a) => is_public(IpAddr::V6(a)),
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                !(d == "localhost"
                    || d.ends_with(".localhost")
                    || d.ends_with(".local")
                    || d.ends_with(".internal")
                    || d == "metadata.google.internal"
                    || !d.contains('.'))
            }
        };
        if !public {
            return Err(UrlError::NonPublic);
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240) // reserved
}

/// Whether an address is a public unicast address a provider could live at.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => {
            let s = a.segments();
            // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96)
            // carry an IPv4 address: judge that one.
            let embedded =
                Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
                return !a.is_unspecified() && !a.is_loopback() && is_public_v4(embedded);
            }
            if s[0] == 0x64 && s[1] == 0xff9b {
                return is_public_v4(embedded);
            }
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] < 0x200)) // Teredo, benchmarking, ORCHID
        }
    }
}

/// How names become addresses: the system resolver, or a stand-in in tests (a rebinding DNS).
pub type Lookup = Arc<
    dyn Fn(String) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>>
        + Send
        + Sync,
>;

/// The system resolver (every A and AAAA record).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    })
}

/// The outbound client's resolver: resolves every address of a name and refuses the name if any
/// of them is not public, unless the operator allowlisted the host. The addresses it returns are
/// the ones the connection uses, so what was checked is what is connected to.
#[derive(Clone)]
pub struct GuardedResolver {
    pub allow: Allowlist,
    pub lookup: Lookup,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = lookup(host.clone())
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                return Err("the host has no addresses".into());
            }
            if !allow.allows_host(&host) && addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(Box::new(NonPublicAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The resolver's refusal, recognisable in a reqwest error's source chain.
#[derive(Debug, thiserror::Error)]
#[error("the host resolves to a private, local or reserved address")]
pub struct NonPublicAddress;

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Allowlist {
        Allowlist::default()
    }

    #[test]
    fn public_https_urls_pass_and_are_normalised() {
        assert_eq!(
            check_base_url("https://api.openai.com/v1/", &none()),
            Ok("https://api.openai.com/v1".into())
        );
        assert_eq!(
            check_base_url("https://8.8.8.8/v1", &none()),
            Ok("https://8.8.8.8/v1".into())
        );
    }

    #[test]
    fn local_and_private_addresses_are_refused_in_every_spelling() {
        for url in [
            "https://127.0.0.1/",
            "https://127.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0x7f.0.0.1/",
            "https://0177.0.0.1/",
            "https://localhost/",
            "https://localhost./",
            "https://api.localhost/",
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://224.0.0.1/",
            "https://[::1]/",
            "https://[::]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://metadata.google.internal/",
            "https://intranet/",
        ] {
            assert_eq!(
                check_base_url(url, &none()),
                Err(UrlError::NonPublic),
                "{url}"
            );
        }
        // A zone id is not even a valid URL host.
        assert!(check_base_url("https://[fe80::1%25eth0]/", &none()).is_err());
    }

    #[test]
    fn http_userinfo_and_queries_are_refused() {
        assert_eq!(
            check_base_url("http://api.example.com/v1", &none()),
            Err(UrlError::NotHttps)
        );
        assert_eq!(
            check_base_url("ftp://api.example.com/", &none()),
            Err(UrlError::NotHttps)
        );
        assert_eq!(
            check_base_url("https://user:pw@api.example.com/", &none()),
            Err(UrlError::Userinfo)
        );
        assert_eq!(
            check_base_url("https://api.example.com/v1?x=1", &none()),
            Err(UrlError::QueryOrFragment)
        );
        assert_eq!(
            check_base_url("not a url", &none()),
            Err(UrlError::Malformed)
        );
    }

    #[test]
    fn the_allowlist_opens_exact_host_and_port_only() {
        let allow = Allowlist::new(vec![("127.0.0.1".into(), 9000)]);
        assert_eq!(
            check_base_url("http://127.0.0.1:9000/v1", &allow),
            Ok("http://127.0.0.1:9000/v1".into())
        );
        assert_eq!(
            check_base_url("http://127.0.0.1:9001/v1", &allow),
            Err(UrlError::NotHttps)
        );
        assert_eq!(
            check_base_url("https://127.0.0.1:9001/v1", &allow),
            Err(UrlError::NonPublic)
        );
        assert_eq!(
            check_base_url("http://127.1:9000/v1", &allow),
            Ok("http://127.0.0.1:9000/v1".into()),
            "the canonical spelling is what is compared"
        );
    }
}
