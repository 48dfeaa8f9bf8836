//! One typed `Settings`, loaded once at startup.
//!
//! Sources, later ones winning: built-in defaults → an optional TOML file (`keyward.toml` in the
//! working directory, or the file given by `--config` / `KEYWARD_CONFIG`) → `KEYWARD_*`
//! environment variables. A secret setting can also be read from a file named by the same
//! variable with `_FILE` appended (e.g. `KEYWARD_DATABASE_URL_FILE`), for container secrets.
//! Every key is documented in the README's configuration table.

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use keyward::system::DatabaseBackend;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Settings that can be given as `KEYWARD_<NAME>` (upper case) or in the TOML file (lower case).
const KEYS: &[&str] = &[
    "database_url",
    "bind",
    "master_key_file",
    "site_root",
    "log_format",
    "log_filter",
    "request_timeout_secs",
    "max_body_bytes",
    "db_max_connections",
    "allow_insecure_master_key_file",
    "vault_refresh_secs",
    "public_url",
    "sign_in_attempts_per_minute",
    "open_sign_up",
    "allowed_private_upstreams",
    "allow_http_upstreams",
    "visitor_messages_per_minute",
    "upstream_max_body_bytes",
    "upstream_max_event_bytes",
    "upstream_max_stream_bytes",
    "upstream_timeout_secs",
    "upstream_idle_timeout_secs",
    "trusted_proxies",
    "metrics_token",
    "smtp_url",
    "mail_from",
];

/// Settings that may also come from `KEYWARD_<NAME>_FILE`.
const SECRET_KEYS: &[&str] = &["database_url", "metrics_token", "smtp_url"];

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://PATH` (created if missing) or `postgres://USER:PASS@HOST/DB`.
    pub database_url: DatabaseUrl,
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// File holding the vault's base64 master secret (mode 0600). Read by the vault.
    pub master_key_file: Option<PathBuf>,
    /// Directory with the built site (`pkg/` with the wasm, JS and CSS, plus public assets).
    pub site_root: PathBuf,
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `keyward_server=debug,tower_http=info`.
    pub log_filter: String,
    /// Time allowed to produce response headers; a streamed body may run longer.
    pub request_timeout_secs: u64,
    /// Largest accepted request body.
    pub max_body_bytes: u64,
    /// Size of the database connection pool.
    pub db_max_connections: u32,
    /// Only warn (instead of refusing to start) when the master key file is group/other-readable.
    pub allow_insecure_master_key_file: bool,
    /// How often each instance checks for keyring changes made elsewhere (rotation).
    pub vault_refresh_secs: u64,
    /// The address people use, e.g. `https://keyward.example.com`. With https, session cookies
    /// are `Secure` and `__Host-` prefixed.
    pub public_url: Option<String>,
    /// Sign-in attempts allowed per minute for one account (and 4× that for one client address).
    pub sign_in_attempts_per_minute: u32,
    /// Let anyone create an account and a workspace without an invitation. New accounts confirm
    /// their address through a mailed link, so this needs `smtp_url`, `mail_from` and
    /// `public_url`.
    pub open_sign_up: bool,
    /// Comma-separated exact `host:port` pairs that provider base URLs may use even though they
    /// are plain http or private addresses (a local model server, the mock provider). Empty: only
    /// https to public addresses.
    pub allowed_private_upstreams: String,
    /// Allow plain-http provider base URLs (to public addresses). Keys would cross the network
    /// unencrypted: only for upstreams on a trusted network.
    pub allow_http_upstreams: bool,
    /// Chat messages one visitor may send per minute on public chat pages (and 3× that for one
    /// client address).
    pub visitor_messages_per_minute: u32,
    /// Largest non-streamed answer (or model list) read from a provider.
    pub upstream_max_body_bytes: u64,
    /// Largest single server-sent event (and so line) read from a provider's stream.
    pub upstream_max_event_bytes: u64,
    /// Largest whole streamed answer read from a provider.
    pub upstream_max_stream_bytes: u64,
    /// Time a non-streamed provider answer may take, from request to its last byte.
    pub upstream_timeout_secs: u64,
    /// Longest silence allowed between two events of a provider's stream.
    pub upstream_idle_timeout_secs: u64,
    /// Comma-separated addresses or CIDR ranges of the reverse proxies in front of Keyward.
    /// Only requests from these peers may name the client in `Forwarded` / `X-Forwarded-For`
    /// (and the scheme in `X-Forwarded-Proto`). Empty: the TCP peer is the client.
    pub trusted_proxies: String,
    /// When set, `GET /metrics` answers only with `Authorization: Bearer <this token>`.
    pub metrics_token: Option<String>,
    /// The SMTP relay for outbound mail: `smtps://user:pass@host:465`,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), or `smtp://host:25` (no TLS: only a
    /// relay on a trusted network). Never serialized (only read).
    #[serde(skip_serializing)]
    pub smtp_url: Option<SecretUrl>,
    /// The sender of outbound mail, e.g. `Keyward <no-reply@example.com>`.
    pub mail_from: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: DatabaseUrl("sqlite://data/keyward.db".into()),
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            master_key_file: None,
            site_root: PathBuf::from("target/site"),
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            request_timeout_secs: 300,
            max_body_bytes: 2 * 1024 * 1024,
            db_max_connections: 16,
            allow_insecure_master_key_file: false,
            vault_refresh_secs: 30,
            public_url: None,
            sign_in_attempts_per_minute: 10,
            open_sign_up: false,
            allowed_private_upstreams: String::new(),
            allow_http_upstreams: false,
            visitor_messages_per_minute: 20,
            upstream_max_body_bytes: 4 << 20,
            upstream_max_event_bytes: 1 << 20,
            upstream_max_stream_bytes: 64 << 20,
            upstream_timeout_secs: 300,
            upstream_idle_timeout_secs: 60,
            trusted_proxies: String::new(),
            metrics_token: None,
            smtp_url: None,
            mail_from: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A database URL. Its `Debug`/`Display` hide the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn backend(&self) -> Result<DatabaseBackend, ConfigError> {
        DatabaseBackend::from_url(&self.0).map_err(|e| ConfigError::Invalid {
            key: "database_url",
            reason: e.to_string(),
        })
    }

    /// The URL with its credentials hidden (see [`redact_url`]).
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// A URL with credentials in it (the SMTP relay). It can be read from configuration but never
/// serialized, and its `Debug` hides the credentials.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, for the client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// `url` with any password replaced by `***` and every query parameter but a few harmless
/// ones masked (`?password=…` is a password too). Parsed as a URL, so a password that holds
/// `@` or `:` is hidden whole.
pub fn redact_url(raw: &str) -> String {
    /// Query parameters that never carry a secret and help to read a log.
    const SHOWN: &[&str] = &[
        "mode",
        "sslmode",
        "application_name",
        "connect_timeout",
        "tls",
    ];
    let Ok(mut url) = url::Url::parse(raw) else {
        return "<unparsed url>".into();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let shown = SHOWN.contains(&k.to_ascii_lowercase().as_str());
            (
                k.into_owned(),
                if shown { v.into_owned() } else { "***".into() },
            )
        })
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url.set_fragment(None);
    url.to_string().replacen("%2A%2A%2A", "***", usize::MAX)
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &self.database_url)
            .field("bind", &self.bind)
            .field("master_key_file", &self.master_key_file)
            .field("site_root", &self.site_root)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("db_max_connections", &self.db_max_connections)
            .field(
                "allow_insecure_master_key_file",
                &self.allow_insecure_master_key_file,
            )
            .field("vault_refresh_secs", &self.vault_refresh_secs)
            .field("public_url", &self.public_url)
            .field(
                "sign_in_attempts_per_minute",
                &self.sign_in_attempts_per_minute,
            )
            .field("open_sign_up", &self.open_sign_up)
            .field("smtp_url", &self.smtp_url)
            .field("mail_from", &self.mail_from)
            .field("allowed_private_upstreams", &self.allowed_private_upstreams)
            .field("allow_http_upstreams", &self.allow_http_upstreams)
            .field(
                "visitor_messages_per_minute",
                &self.visitor_messages_per_minute,
            )
            .field("upstream_max_body_bytes", &self.upstream_max_body_bytes)
            .field("upstream_max_event_bytes", &self.upstream_max_event_bytes)
            .field("upstream_max_stream_bytes", &self.upstream_max_stream_bytes)
            .field("upstream_timeout_secs", &self.upstream_timeout_secs)
            .field(
                "upstream_idle_timeout_secs",
                &self.upstream_idle_timeout_secs,
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("configuration: cannot read {var} ({path}): {reason}")]
    SecretFile {
        var: String,
        path: String,
        reason: String,
    },
}

impl Settings {
    /// Loads settings from the process environment and the optional file.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(config_file, &vars)
    }

    /// Loads settings from the given environment (testable without touching the process env).
    pub fn load_from(
        config_file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

        let file = match config_file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Load(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                Some(path.to_path_buf())
            }
            None => match lookup("KEYWARD_CONFIG") {
                Some(p) => Some(PathBuf::from(p)),
                None => Some(PathBuf::from("keyward.toml")).filter(|p| p.exists()),
            },
        };

        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &file {
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only the documented keys are taken from the environment, so unrelated KEYWARD_*
        // variables (test settings, the master key itself) never reach the settings.
        let env_pairs: Vec<(String, String)> = env
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("KEYWARD_")?.to_ascii_lowercase();
                KEYS.contains(&key.as_str()).then(|| (key, v.clone()))
            })
            .collect();
        for (key, value) in &env_pairs {
            figment = figment.merge(Serialized::global(key, parse_env_value(value)));
        }
        for key in SECRET_KEYS {
            let var = format!("KEYWARD_{}_FILE", key.to_ascii_uppercase());
            if let Some(path) = lookup(&var) {
                if env_pairs.iter().any(|(k, _)| k == key) {
                    return Err(ConfigError::Load(format!(
                        "both KEYWARD_{} and {var} are set; use one",
                        key.to_ascii_uppercase()
                    )));
                }
                let value =
                    std::fs::read_to_string(&path).map_err(|e| ConfigError::SecretFile {
                        var: var.clone(),
                        path: path.clone(),
                        reason: e.kind().to_string(),
                    })?;
                figment = figment.merge(Serialized::global(key, value.trim_end().to_string()));
            }
        }

        let settings: Settings = figment.extract().map_err(|e| {
            // figment's message names the key and the source; keep it to one line.
            ConfigError::Load(e.to_string().replace('\n', "; "))
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Settings from the text of a TOML file alone (defaults for the rest), validated like any
    /// other source. The fuzz target of the config loader drives it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string().replace('\n', "; ")))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.database_url.backend()?;
        if self.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "request_timeout_secs",
                reason: "must be at least 1".into(),
            });
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                reason: "must be at least 1024".into(),
            });
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::Invalid {
                key: "public_url",
                reason: "must start with https:// (or http:// for local use)".into(),
            });
        }
        if let Err(reason) = parse_allowlist(&self.allowed_private_upstreams) {
            return Err(ConfigError::Invalid {
                key: "allowed_private_upstreams",
                reason,
            });
        }
        if self.open_sign_up
            && (self.smtp_url.is_none() || self.mail_from.is_none() || self.public_url.is_none())
        {
            return Err(ConfigError::Invalid {
                key: "open_sign_up",
                reason: "needs smtp_url, mail_from and public_url: a new account confirms its \
                         address through a link sent by mail"
                    .into(),
            });
        }
        self.mail_sender()?;
        if self.sign_in_attempts_per_minute == 0 {
            return Err(ConfigError::Invalid {
                key: "sign_in_attempts_per_minute",
                reason: "must be at least 1".into(),
            });
        }
        if self.visitor_messages_per_minute == 0 {
            return Err(ConfigError::Invalid {
                key: "visitor_messages_per_minute",
                reason: "must be at least 1".into(),
            });
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.trim().len() < 16)
        {
            return Err(ConfigError::Invalid {
                key: "metrics_token",
                reason: "must be at least 16 characters".into(),
            });
        }
        if let Err(reason) = crate::client::TrustedProxies::parse(&self.trusted_proxies) {
            return Err(ConfigError::Invalid {
                key: "trusted_proxies",
                reason,
            });
        }
        for (key, value, least) in [
            (
                "upstream_max_body_bytes",
                self.upstream_max_body_bytes,
                1024,
            ),
            (
                "upstream_max_event_bytes",
                self.upstream_max_event_bytes,
                1024,
            ),
            (
                "upstream_max_stream_bytes",
                self.upstream_max_stream_bytes,
                1024,
            ),
            ("upstream_timeout_secs", self.upstream_timeout_secs, 1),
            (
                "upstream_idle_timeout_secs",
                self.upstream_idle_timeout_secs,
                1,
            ),
        ] {
            if value < least {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("must be at least {least}"),
                });
            }
        }
        if self.vault_refresh_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "vault_refresh_secs",
                reason: "must be at least 1".into(),
            });
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "db_max_connections",
                reason: "must be at least 1".into(),
            });
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_filter).map_err(|e| {
            ConfigError::Invalid {
                key: "log_filter",
                reason: e.to_string(),
            }
        })?;
        Ok(())
    }
}

/// Environment values are strings; numbers and booleans are typed the way figment's own `Env`
/// provider does it, so `KEYWARD_BIND=abc` fails as "invalid socket address" rather than later.
fn parse_env_value(value: &str) -> figment::value::Value {
    value
        .parse::<figment::value::Value>()
        .unwrap_or_else(|_| figment::value::Value::from(value.to_string()))
}

/// Parses `host:port, host:port` (hosts lower-cased; IPv6 in brackets).
fn parse_allowlist(text: &str) -> Result<Vec<(String, u16)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (host, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("{entry:?} is not host:port"))?;
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{entry:?} has no valid port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("{entry:?} has no host"));
            }
            Ok((host.to_ascii_lowercase(), port))
        })
        .collect()
}

impl Settings {
    /// The operator's exact `host:port` exceptions to the upstream SSRF rules.
    pub fn allowed_private_upstreams(&self) -> Vec<(String, u16)> {
        parse_allowlist(&self.allowed_private_upstreams).unwrap_or_default()
    }

    /// `mail_from` as a mailbox (`None` when unset).
    pub fn mail_sender(&self) -> Result<Option<lettre::message::Mailbox>, ConfigError> {
        self.mail_from
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: lettre::address::AddressError| ConfigError::Invalid {
                key: "mail_from",
                reason: e.to_string(),
            })
    }

    /// Whether a request came over https: the configured public URL says so, or a trusted proxy
    /// did (`X-Forwarded-Proto` / `Forwarded: proto`). Cookies are then `Secure` and `__Host-`.
    pub fn https_for(&self, client: Option<&crate::client::ClientAddr>) -> bool {
        self.https() || client.is_some_and(|c| c.https)
    }

    /// Whether people reach this instance over https (cookies are then `Secure`).
    pub fn https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_any_source() {
        let s = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(s.bind, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(s.database_url.expose(), "sqlite://data/keyward.db");
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("KEYWARD_BIND", "0.0.0.0:8080"),
                ("KEYWARD_DATABASE_URL", "postgres://u:pw@db/k"),
                ("KEYWARD_LOG_FORMAT", "json"),
                ("KEYWARD_REQUEST_TIMEOUT_SECS", "30"),
                ("KEYWARD_TEST_DATABASE_URL", "ignored"),
                ("KEYWARD_MASTER_KEY", "never-a-setting"),
            ]),
        )
        .unwrap();
        assert_eq!(s.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.request_timeout_secs, 30);
        assert_eq!(s.database_url.backend().unwrap(), DatabaseBackend::Postgres);
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("kw-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyward.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:4000\"\nlog_filter = \"debug\"\n").unwrap();
        let s = Settings::load_from(Some(&path), &env(&[("KEYWARD_LOG_FILTER", "warn")])).unwrap();
        assert_eq!(s.bind.port(), 4000, "file beats defaults");
        assert_eq!(s.log_filter, "warn", "env beats file");

        std::fs::write(&path, "bnd = \"127.0.0.1:4000\"\n").unwrap();
        let err = Settings::load_from(Some(&path), &env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("bnd"),
            "unknown keys are named: {err}"
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = std::env::temp_dir().join(format!("kw-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db-url");
        std::fs::write(&path, "postgres://u:s3cret@db/k\n").unwrap();
        let p = path.to_str().unwrap();
        let s = Settings::load_from(None, &env(&[("KEYWARD_DATABASE_URL_FILE", p)])).unwrap();
        assert_eq!(s.database_url.expose(), "postgres://u:s3cret@db/k");

        let both = env(&[
            ("KEYWARD_DATABASE_URL_FILE", p),
            ("KEYWARD_DATABASE_URL", "sqlite://x"),
        ]);
        assert!(Settings::load_from(None, &both).is_err());
        let missing = env(&[("KEYWARD_DATABASE_URL_FILE", "/nonexistent/kw")]);
        let err = Settings::load_from(None, &missing).unwrap_err().to_string();
        assert!(err.contains("KEYWARD_DATABASE_URL_FILE"), "{err}");
    }

    #[test]
    fn malformed_values_give_one_line_errors() {
        for (k, v, needle) in [
            ("KEYWARD_BIND", "not-an-address", "bind"),
            (
                "KEYWARD_DATABASE_URL",
                "mysql://h/db",
                "unsupported database URL scheme",
            ),
            ("KEYWARD_LOG_FORMAT", "yaml", "log_format"),
            ("KEYWARD_REQUEST_TIMEOUT_SECS", "-3", "request_timeout_secs"),
            ("KEYWARD_REQUEST_TIMEOUT_SECS", "0", "request_timeout_secs"),
            ("KEYWARD_LOG_FILTER", "[[[", "log_filter"),
        ] {
            let err = Settings::load_from(None, &env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{k}={v}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_database_password() {
        let s = Settings::load_from(
            None,
            &env(&[("KEYWARD_DATABASE_URL", "postgres://kw:hunter2@db:5432/k")]),
        )
        .unwrap();
        let shown = format!("{s:?} {}", s.database_url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://kw:***@db:5432/k"), "{shown}");
    }

    #[test]
    fn open_sign_up_needs_a_mail_relay_and_hides_its_password() {
        let base = [("KEYWARD_OPEN_SIGN_UP", "true")];
        let err = Settings::load_from(None, &env(&base)).unwrap_err();
        assert!(err.to_string().contains("open_sign_up"), "{err}");
        let full = [
            ("KEYWARD_OPEN_SIGN_UP", "true"),
            (
                "KEYWARD_SMTP_URL",
                "smtps://mailer:s3cret-pw@smtp.example.com:465",
            ),
            ("KEYWARD_MAIL_FROM", "Keyward <no-reply@example.com>"),
            ("KEYWARD_PUBLIC_URL", "https://keyward.example.com"),
        ];
        let s = Settings::load_from(None, &env(&full)).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(
            shown.contains("smtps://mailer:***@smtp.example.com:465"),
            "{shown}"
        );
        let bad_from = [("KEYWARD_MAIL_FROM", "not an address")];
        let err = Settings::load_from(None, &env(&bad_from)).unwrap_err();
        assert!(err.to_string().contains("mail_from"), "{err}");
    }

    #[test]
    fn every_spelling_of_a_database_password_is_hidden() {
        for (url, secret, shown) in [
            ("postgres://u:p@ss@db/k", "ss@db", "postgres://u:***@db/k"),
            ("postgres://u:p%40ss:w@db/k", "ss", "postgres://u:***@db/k"),
            (
                "postgres://db/k?password=hunter2&sslmode=require",
                "hunter2",
                "postgres://db/k?password=***&sslmode=require",
            ),
            (
                "postgres://u@db/k?PassWord=hunter2",
                "hunter2",
                "postgres://u@db/k?PassWord=***",
            ),
            (
                "postgres://u:hunter2@db/k?options=-c%20secret%3Dx",
                "secret",
                "postgres://u:***@db/k?options=***",
            ),
            (
                "sqlite://data/keyward.db?mode=rwc",
                "",
                "sqlite://data/keyward.db?mode=rwc",
            ),
        ] {
            let r = DatabaseUrl::new(url).redacted();
            assert_eq!(r, shown, "{url}");
            if !secret.is_empty() {
                assert!(!r.contains(secret), "{url} -> {r}");
            }
        }
        assert_eq!(DatabaseUrl::new("not a url").redacted(), "<unparsed url>");
    }
}
