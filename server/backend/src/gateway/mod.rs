//! The provider gateway: one pooled outbound HTTP client, the SSRF guard, and the calls Keyward
//! makes to providers. Key management uses [`Gateway::test_key`]; the chat adapters build on the
//! same client.

pub mod anthropic;
pub mod cache;
pub mod chat;
pub mod ssrf;

use keyward::catalogue::WireFormat;
use keyward::dto::KeyTestResult;
use keyward::keys::ErrorClass;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use ssrf::{Allowlist, GuardedResolver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time allowed to open a connection to a provider.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per upstream host, and for how long. A burst (a database restart piles
/// up thousands of requests) opens as many upstream connections; beyond these they are closed
/// when done instead of held, each with its buffers (about 20 KiB a connection), for good.
pub const POOL_IDLE_PER_HOST: usize = 256;
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a key test from request to full answer.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The Anthropic API version Keyward speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Clone, Debug)]
pub struct Gateway {
    /// The client for every public destination: its resolver refuses any name with a
    /// non-public address.
    client: reqwest::Client,
    /// One client per allowlisted `host:port` whose host is a name: only its resolver may
    /// return that name's private addresses, and it is only used for that exact host and port.
    /// (A resolver never sees the port, so the port is enforced by choosing the client.)
    pinned: Arc<std::collections::HashMap<(String, u16), reqwest::Client>>,
    allow: Allowlist,
    limits: Limits,
}

/// How much, and for how long, Keyward reads from any upstream. Every read from a provider is
/// bounded by these: an upstream that sends too much, or too slowly, gets its connection dropped
/// and the caller a classified error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A whole non-streamed answer or model list.
    pub max_body_bytes: usize,
    /// One server-sent event (and so any one line of a stream).
    pub max_event_bytes: usize,
    /// A whole streamed answer.
    pub max_stream_bytes: u64,
    /// From sending the request to the first byte of the answer.
    pub first_byte: Duration,
    /// From sending a non-streamed request to the last byte of its answer.
    pub total: Duration,
    /// Longest silence between two streamed events.
    pub idle: Duration,
}

impl Limits {
    /// The limits the settings give (`KEYWARD_UPSTREAM_*`).
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let secs = Duration::from_secs;
        Limits {
            max_body_bytes: usize::try_from(settings.upstream_max_body_bytes).unwrap_or(usize::MAX),
            max_event_bytes: usize::try_from(settings.upstream_max_event_bytes)
                .unwrap_or(usize::MAX),
            max_stream_bytes: settings.upstream_max_stream_bytes,
            first_byte: chat::FIRST_BYTE_TIMEOUT.min(secs(settings.upstream_timeout_secs)),
            total: secs(settings.upstream_timeout_secs),
            idle: secs(settings.upstream_idle_timeout_secs),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            max_event_bytes: 1 << 20,
            max_stream_bytes: 64 << 20,
            first_byte: chat::FIRST_BYTE_TIMEOUT,
            total: Duration::from_secs(300),
            idle: chat::IDLE_TIMEOUT,
        }
    }
}

/// Builds the auth headers for a key. The value is marked sensitive so that no debug output or
/// trace layer of the HTTP stack ever prints it. One of the two places a key is exposed.
/// `None` if the key holds bytes a header cannot carry.
pub fn auth_headers(wire: WireFormat, key: &SecretString) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    match wire {
        WireFormat::OpenAi => {
            let mut v =
                HeaderValue::from_str(&format!("Bearer {}", key.expose_secret().trim())).ok()?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        WireFormat::Anthropic => {
            let mut v = HeaderValue::from_str(key.expose_secret().trim()).ok()?;
            v.set_sensitive(true);
            headers.insert("x-api-key", v);
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
    }
    Some(headers)
}

impl Gateway {
    /// A gateway that may reach public https upstreams plus the allowlisted `host:port` pairs.
    pub fn new(allowlist: Vec<(String, u16)>) -> Result<Self, reqwest::Error> {
        Self::with(Allowlist::new(allowlist), ssrf::system_lookup())
    }

    /// A gateway with an explicit upstream policy and name lookup (tests use a rebinding one).
    pub fn with(allow: Allowlist, lookup: ssrf::Lookup) -> Result<Self, reqwest::Error> {
        let build = |names: Allowlist| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
                .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
                .dns_resolver(Arc::new(GuardedResolver {
                    allow: names,
                    lookup: lookup.clone(),
                }))
                .build()
        };
        let mut pinned = std::collections::HashMap::new();
        for (host, port) in allow.entries() {
            if host.parse::<std::net::IpAddr>().is_err() {
                let only = Allowlist::new(vec![(host.clone(), *port)]);
                pinned.insert((host.clone(), *port), build(only)?);
            }
        }
        Ok(Gateway {
            client: build(Allowlist::default())?,
            pinned: Arc::new(pinned),
            allow,
            limits: Limits::default(),
        })
    }

    /// The client for a checked base URL: the pinned one of its exact `host:port`, if the
    /// operator allowlisted that name and port, otherwise the public one.
    fn client_for(&self, base: &str) -> &reqwest::Client {
        url::Url::parse(base)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.trim_end_matches('.').to_ascii_lowercase();
                let port = u.port_or_known_default()?;
                self.pinned.get(&(host, port))
            })
            .unwrap_or(&self.client)
    }

    /// The gateway the server runs with: the operator's upstream policy and read limits.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Self, reqwest::Error> {
        let policy = Allowlist::new(settings.allowed_private_upstreams())
            .with_http(settings.allow_http_upstreams);
        Ok(Self::with(policy, ssrf::system_lookup())?.with_limits(Limits::from_settings(settings)))
    }

    /// Replaces the read limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Shortens the first-byte and idle timeouts (tests of a hanging provider).
    pub fn with_first_byte_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.limits.first_byte = timeout;
        self.limits.idle = self.limits.idle.min(timeout);
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allow
    }

    /// A live, authenticated call to the provider's cheapest endpoint (its model list). Says OK
    /// or the classified reason, with the latency. Never returns the provider's body.
    #[tracing::instrument(skip_all, fields(wire = ?wire))]
    pub async fn test_key(
        &self,
        wire: WireFormat,
        base_url: &str,
        key: &SecretString,
    ) -> KeyTestResult {
        let started = Instant::now();
        let up = chat::Upstream {
            wire,
            base_url,
            key,
        };
        let outcome = self.list_models(&up).await;
        let latency_ms = started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        match outcome {
            Ok(_) => KeyTestResult {
                ok: true,
                class: None,
                message: "the provider accepted the key".into(),
                latency_ms,
            },
            Err(e) => KeyTestResult {
                ok: false,
                class: Some(e.class),
                message: e.message,
                latency_ms,
            },
        }
    }
}

fn is_refused_address(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.is::<ssrf::NonPublicAddress>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// At most `limit` bytes of an (error) body, for at most `within`; whatever arrived by then.
async fn read_prefix(mut res: reqwest::Response, limit: usize, within: Duration) -> String {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < limit {
        match tokio::time::timeout_at(deadline, res.chunk()).await {
            Ok(Ok(Some(chunk))) => out.extend_from_slice(&chunk),
            _ => break,
        }
    }
    out.truncate(limit);
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The body is larger than allowed.
    TooLarge,
    /// The body did not arrive in time.
    TooSlow,
    /// The connection failed.
    Transport(reqwest::Error),
}

/// Reads a whole body, refusing it as soon as it passes `limit` bytes (by its declared length or
/// by what arrived) or `deadline` passes. The response is dropped on error, which closes the
/// connection instead of reading the rest.
pub async fn read_body(
    mut res: reqwest::Response,
    limit: usize,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, ReadError> {
    if res.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut out = Vec::with_capacity(res.content_length().map_or(8 << 10, |n| n as usize));
    loop {
        match tokio::time::timeout_at(deadline, res.chunk()).await {
            Err(_) => return Err(ReadError::TooSlow),
            Ok(Err(e)) => return Err(ReadError::Transport(e)),
            Ok(Ok(None)) => return Ok(out),
            Ok(Ok(Some(chunk))) => {
                if out.len() + chunk.len() > limit {
                    return Err(ReadError::TooLarge);
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
}

/// Enforces the size limits on a server-sent-event byte stream before it is parsed: no one event
/// (and so no one line) may pass `max_event` bytes, and the whole stream may not pass
/// `max_total`. Over a limit the stream yields one error and ends, which drops the connection.
///
/// Written by hand, not taken from a crate: it is a byte scan on the hot path of every stream,
/// and the SSE parser it feeds (eventsource-stream) buffers an unfinished event without a bound.
pub fn bounded_events<S, E>(
    bytes: S,
    max_event: usize,
    max_total: u64,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, BoundedError<E>>>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>>,
{
    use futures_util::StreamExt;
    let mut scan = EventScan::default();
    let mut total = 0u64;
    let mut over = false;
    bytes
        .map(move |item| {
            if over {
                return None;
            }
            let chunk = match item {
                Ok(c) => c,
                Err(e) => return Some(Err(BoundedError::Source(e))),
            };
            total = total.saturating_add(chunk.len() as u64);
            if total > max_total {
                over = true;
                return Some(Err(BoundedError::StreamTooLarge));
            }
            if scan.feed(&chunk) > max_event {
                over = true;
                return Some(Err(BoundedError::EventTooLarge));
            }
            Some(Ok(chunk))
        })
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready)
}

/// A stream error from [`bounded_events`].
#[derive(Debug)]
pub enum BoundedError<E> {
    Source(E),
    EventTooLarge,
    StreamTooLarge,
}

impl<E: std::fmt::Display> std::fmt::Display for BoundedError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoundedError::Source(e) => e.fmt(f),
            BoundedError::EventTooLarge => f.write_str("a stream event is too large"),
            BoundedError::StreamTooLarge => f.write_str("the stream is too large"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for BoundedError<E> {}

/// Tracks the size of the event being received: bytes since the last blank line. Lines end in
/// CR, LF or CRLF, as the SSE grammar allows.
#[derive(Debug, Default)]
struct EventScan {
    event: usize,
    line: usize,
    after_cr: bool,
}

impl EventScan {
    /// Feeds a chunk; returns the largest event size seen while scanning it.
    fn feed(&mut self, chunk: &[u8]) -> usize {
        let mut largest = 0;
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.line == 0 {
                        self.event = 0;
                    } else {
                        self.line = 0;
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.line += 1;
                    self.event += 1;
                    largest = largest.max(self.event);
                }
            }
        }
        largest
    }
}

/// The owner-facing explanation of an error class. Never quotes the provider's body.
pub fn describe(class: ErrorClass, status: Option<u16>) -> String {
    let code = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
    match class {
        ErrorClass::InvalidKey => format!("the provider rejected the key{code}"),
        ErrorClass::NoQuota => {
            format!("the provider says the account has no quota or credit left{code}")
        }
        ErrorClass::RateLimited => {
            format!("the provider is rate limiting this key{code}; try again shortly")
        }
        ErrorClass::ProviderUnavailable => format!("the provider is unavailable{code}"),
        ErrorClass::Rejected => format!("the provider refused the request{code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn an_event_is_measured_across_lines_and_chunks_with_any_line_ending() {
        let mut scan = EventScan::default();
        // Two lines of one event (9 + 6 bytes), CRLF endings, then a blank line ends it.
        assert_eq!(scan.feed(b"data: abc\r\nid: 12\r\n"), 15);
        assert_eq!(scan.feed(b"\r\n"), 0);
        // A new event, split over chunks, LF and lone-CR endings.
        assert_eq!(scan.feed(b"data: "), 6);
        assert_eq!(scan.feed(b"xy\rdata: z\n\n"), 15);
        assert_eq!(scan.feed(b"data: 1\r\r"), 7);
        // A CRLF split between chunks is one line ending, not a blank line.
        assert_eq!(scan.feed(b"data: 12\r"), 8);
        assert_eq!(scan.feed(b"\ndata: 3"), 15);
    }

    #[tokio::test]
    async fn bounded_events_stop_at_the_first_limit() {
        let chunks = |v: Vec<&'static [u8]>| {
            futures_util::stream::iter(
                v.into_iter()
                    .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from_static(c))),
            )
        };
        let out: Vec<_> = bounded_events(chunks(vec![b"data: 1\n\n", b"data: 22\n\n"]), 8, 100)
            .collect()
            .await;
        assert!(out.iter().all(Result::is_ok) && out.len() == 2);
        let out: Vec<_> =
            bounded_events(chunks(vec![b"data: 1\n\n", b"data: 223\n\n", b"x"]), 8, 100)
                .collect()
                .await;
        assert_eq!(out.len(), 2, "nothing follows the error");
        assert!(matches!(out[1], Err(BoundedError::EventTooLarge)));
        let out: Vec<_> = bounded_events(chunks(vec![b"data: 1\n\n"; 5]), 8, 30)
            .collect()
            .await;
        assert_eq!(out.len(), 4);
        assert!(matches!(out[3], Err(BoundedError::StreamTooLarge)));
    }
}
