//! Logging: `tracing` to stdout as text or JSON lines.

use crate::config::LogFormat;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Spans that record secrets, always off whatever the filter says: SeaORM's PostgreSQL driver
/// records its whole `ConnectOptions` (the URL with the password) on its `connect` span, and
/// every event inside it (the TLS handshake's, at TRACE) would print it.
const NO_SECRET_SPANS: &str = "sea_orm::driver::sqlx_postgres=off";

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), which
/// keeps tests that start several servers simple.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(NO_SECRET_SPANS.parse().expect("a valid directive"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(true)).try_init(),
    };
}

/// Path segments that are secrets: the one after each of these prefixes (bearer links).
const SECRET_AFTER: &[&str] = &["/invite/", "/sign-up/"];

/// A request path as it may be logged: secret segments (an invitation link's token, anything
/// shaped like an API token) become `<redacted>`, and control characters are escaped so that a
/// path cannot forge a log line.
pub fn loggable_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut redact_next = false;
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let secret = redact_next || segment.starts_with("kw_");
        redact_next = SECRET_AFTER
            .iter()
            .any(|p| p.trim_matches('/') == segment && i == 1);
        if secret && !segment.is_empty() {
            out.push_str("<redacted>");
        } else {
            out.extend(segment.chars().flat_map(char::escape_default));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn secret_path_segments_never_reach_a_log() {
        assert_eq!(loggable_path("/invite/abcDEF123"), "/invite/<redacted>");
        assert_eq!(loggable_path("/sign-up/abcDEF123"), "/sign-up/<redacted>");
        assert_eq!(loggable_path("/sign-up"), "/sign-up");
        assert_eq!(
            loggable_path("/invite/abc/extra"),
            "/invite/<redacted>/extra"
        );
        assert_eq!(loggable_path("/invite/"), "/invite/");
        assert_eq!(loggable_path("/x/kw_secret"), "/x/<redacted>");
        assert_eq!(
            loggable_path("/w/invite/x"),
            "/w/invite/x",
            "only the route"
        );
        assert_eq!(loggable_path("/keys"), "/keys");
        assert_eq!(loggable_path("/a\nforged line"), "/a\\nforged line");
    }
}
