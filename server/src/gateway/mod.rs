//! The provider gateway: one pooled outbound HTTP client, the SSRF guard, and the calls Keyward
//! makes to providers. Key management uses [`Gateway::test_key`]; the chat adapters build on the
//! same client.

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
/// Time allowed for a key test from request to full answer.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The Anthropic API version Keyward speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Clone, Debug)]
pub struct Gateway {
    client: reqwest::Client,
    allow: Allowlist,
    /// Time allowed until the first byte of an answer (and between streamed events).
    first_byte: std::time::Duration,
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
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                allow: allow.clone(),
                lookup,
            }))
            .build()?;
        Ok(Gateway {
            client,
            allow,
            first_byte: chat::FIRST_BYTE_TIMEOUT,
        })
    }

    /// Shortens the first-byte and idle timeouts (tests of a hanging provider).
    pub fn with_first_byte_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.first_byte = timeout;
        self
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allow
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
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

async fn read_prefix(mut res: reqwest::Response, limit: usize) -> String {
    let mut out = Vec::new();
    while out.len() < limit {
        match res.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk),
            _ => break,
        }
    }
    out.truncate(limit);
    String::from_utf8_lossy(&out).into_owned()
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
