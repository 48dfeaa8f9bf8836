//! What the dashboard shows about the running instance: which database it talks to and whether
//! that database answers. Shared between the server (which fills it in) and the wasm client.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The relational database behind an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}

impl DatabaseBackend {
    /// Picks the backend from a connection URL's scheme, the only place a user names it.
    ///
    /// ```
    /// use keyward::system::DatabaseBackend;
    /// assert_eq!(DatabaseBackend::from_url("sqlite://data/keyward.db"), Ok(DatabaseBackend::Sqlite));
    /// assert!(DatabaseBackend::from_url("mysql://localhost/x").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self, UnknownScheme> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        scheme.parse()
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

impl fmt::Display for DatabaseBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A database URL whose scheme Keyward does not speak.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
pub struct UnknownScheme {
    /// Only the scheme is kept: the rest of a URL may hold a password.
    pub scheme: String,
}

impl FromStr for DatabaseBackend {
    type Err = UnknownScheme;

    fn from_str(scheme: &str) -> Result<Self, Self::Err> {
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(UnknownScheme {
                // Bounded so that a pasted secret without a colon is not echoed back whole.
                scheme: scheme.chars().take(16).collect(),
            }),
        }
    }
}

/// The instance's health as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// A random id minted when the database was first set up; stable across restarts.
    pub instance_id: String,
    pub database: DatabaseBackend,
    /// How many migrations have been applied to this database.
    pub migrations_applied: u32,
    /// Round trip of the status query, in microseconds.
    pub query_micros: u64,
    /// How many times anyone has asked for this status (a tiny write, so the round trip is real).
    pub status_checks: u64,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_map_to_backends() {
        assert_eq!(
            DatabaseBackend::from_url("sqlite://data/x.db?mode=rwc"),
            Ok(DatabaseBackend::Sqlite)
        );
        assert_eq!(
            DatabaseBackend::from_url("sqlite::memory:"),
            Ok(DatabaseBackend::Sqlite)
        );
        assert_eq!(
            DatabaseBackend::from_url("postgres://postgres@127.0.0.1/k"),
            Ok(DatabaseBackend::Postgres)
        );
        assert_eq!(
            DatabaseBackend::from_url("PostgreSQL://h/k"),
            Ok(DatabaseBackend::Postgres)
        );
    }

    #[test]
    fn unknown_schemes_are_refused_without_echoing_the_url() {
        let err = DatabaseBackend::from_url("mysql://root:hunter2@db/k").unwrap_err();
        assert_eq!(err.scheme, "mysql");
        assert!(!err.to_string().contains("hunter2"));

        let err =
            DatabaseBackend::from_url("no-scheme-at-all-but-a-long-secret-value").unwrap_err();
        assert!(err.scheme.len() <= 16, "scheme echo is bounded");
        assert!(!err.to_string().contains("secret-value"));
    }
}
