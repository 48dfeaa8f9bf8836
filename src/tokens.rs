//! Workspace API tokens: what a token may do, and the shapes the dashboard shows. A token is
//! `kw_` followed by 256 random bits (URL-safe base64); only its SHA-256 is stored.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Every token starts with this, so secret scanners and people can recognise one.
pub const TOKEN_PREFIX: &str = "kw_";
/// Characters of a token shown to identify it later (`kw_` + 6).
pub const SHOWN_CHARS: usize = 9;
/// Longest token name.
pub const MAX_NAME_CHARS: usize = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// `POST /v1/chat/completions`, `POST /v1/messages`.
    Chat,
    /// `GET /v1/models`.
    Models,
    /// The management REST API (`/api/v1/…`).
    Management,
}

impl TokenScope {
    pub const ALL: [Self; 3] = [Self::Chat, Self::Models, Self::Management];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Models => "models",
            Self::Management => "management",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope: use chat, models or management")]
pub struct UnknownScope;

impl FromStr for TokenScope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or(UnknownScope)
    }
}

/// `chat,models` ⇄ scopes, sorted and without duplicates.
pub fn scopes_to_text(scopes: &[TokenScope]) -> String {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

pub fn scopes_from_text(text: &str) -> Result<Vec<TokenScope>, UnknownScope> {
    let mut v = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<Vec<TokenScope>, _>>()?;
    v.sort();
    v.dedup();
    Ok(v)
}

/// Whether a string has the shape of a Keyward token (cheap check before any lookup).
pub fn looks_like_token(s: &str) -> bool {
    s.len() == TOKEN_PREFIX.len() + 43
        && s.starts_with(TOKEN_PREFIX)
        && s[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A token as the dashboard lists it: never the secret, only its first characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    /// `kw_abc123…`
    pub shown: String,
    pub scopes: Vec<TokenScope>,
    pub chatbot_id: Option<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
    pub created_by: Option<String>,
    pub revoked: bool,
    pub expired: bool,
}

/// A new token as the dashboard (or the REST API) asks for it. Unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    pub name: String,
    pub scopes: Vec<TokenScope>,
    /// Empty: not bound to a chatbot.
    #[serde(default)]
    pub chatbot_id: String,
    /// `None`: never expires.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A token just created: the only time its secret is shown. Its `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedApiToken {
    pub token: String,
    pub view: ApiTokenView,
}

impl std::fmt::Debug for CreatedApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiToken")
            .field("token", &"<shown once>")
            .field("view", &self.view)
            .finish()
    }
}

/// The API tokens page of a workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokensPage {
    pub workspace: crate::dto::WorkspaceSummary,
    pub tokens: Vec<ApiTokenView>,
    /// (id, name) of the workspace's chatbots, to bind a token to.
    pub chatbots: Vec<(String, String)>,
    /// Owners and admins create and revoke tokens.
    pub can_manage: bool,
    /// Where bare model ids go (`None`: automatic).
    pub default_provider: Option<String>,
    /// Owners choose the default provider.
    pub can_set_default: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        assert_eq!(
            scopes_from_text("models, chat,chat"),
            Ok(vec![TokenScope::Chat, TokenScope::Models])
        );
        assert_eq!(
            scopes_to_text(&[TokenScope::Management, TokenScope::Chat, TokenScope::Chat]),
            "chat,management"
        );
        assert_eq!(scopes_from_text(""), Ok(vec![]));
        assert!(scopes_from_text("chat,admin").is_err());
    }

    #[test]
    fn token_shape() {
        let t = format!("kw_{}", "A".repeat(43));
        assert!(looks_like_token(&t));
        assert!(!looks_like_token(&t[..t.len() - 1]));
        assert!(!looks_like_token(&format!("sk_{}", "A".repeat(43))));
        assert!(!looks_like_token(&format!("kw_{}!", "A".repeat(42))));
        assert!(!looks_like_token(&format!("kw_{}é", "A".repeat(41))));
    }
}
