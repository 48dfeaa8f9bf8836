//! Provider credentials as the domain sees them: who owns a key (its scope) and how a key is
//! shown once it has been stored (its masked hint). The secret itself never enters this crate.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Who a stored provider key belongs to. The resolution chain prefers chatbot over workspace over
/// platform keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialScope {
    /// The operator's fallback key, usable by every workspace (credits are charged).
    Platform,
    /// A workspace's own key.
    Workspace,
    /// A key bound to one chatbot of a workspace; overrides the workspace key for that chatbot.
    Chatbot,
}

impl CredentialScope {
    pub const ALL: [CredentialScope; 3] = [Self::Platform, Self::Workspace, Self::Chatbot];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Workspace => "workspace",
            Self::Chatbot => "chatbot",
        }
    }
}

impl fmt::Display for CredentialScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown credential scope")]
pub struct UnknownScope;

impl FromStr for CredentialScope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or(UnknownScope)
    }
}

/// Prefixes providers publish for their keys, longest first so that `sk-ant-` wins over `sk-`.
pub const KNOWN_KEY_PREFIXES: &[&str] = &[
    "sk-proj-", "sk-ant-", "sk-or-", "nvapi-", "gsk_", "AIza", "sk-",
];

/// Shortest key that gets a partial hint; shorter keys reveal too much through their last four.
pub const MIN_HINT_LEN: usize = 20;

/// The masked form of a key, shown instead of the key everywhere: the provider's known prefix,
/// `…`, and the last four characters — only for keys of at least [`MIN_HINT_LEN`] characters;
/// anything shorter (or not ASCII) shows as `••••`. Computed once when the key is saved.
///
/// ```
/// use keyward::credential::mask;
/// assert_eq!(mask("sk-proj-abcdefghijklmnop1234"), "sk-proj-…1234");
/// assert_eq!(mask("short-key"), "••••");
/// ```
pub fn mask(key: &str) -> String {
    let key = key.trim();
    if key.len() < MIN_HINT_LEN || !key.is_ascii() {
        return "••••".into();
    }
    let prefix = KNOWN_KEY_PREFIXES
        .iter()
        .find(|p| key.starts_with(*p))
        .copied()
        .unwrap_or("");
    let last4 = &key[key.len() - 4..];
    format!("{prefix}…{last4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_keep_only_the_known_prefix_and_the_last_four() {
        assert_eq!(mask("sk-abcdefghijklmnopqrstuvwxyzabcd"), "sk-…abcd");
        assert_eq!(mask("sk-ant-api03-abcdefghijklmnopWXYZ"), "sk-ant-…WXYZ");
        assert_eq!(mask("gsk_0123456789abcdefghij9876"), "gsk_…9876");
        assert_eq!(mask("AIzaSyA0123456789abcdefghijk"), "AIza…hijk");
        assert_eq!(mask("nvapi-0123456789abcdefghij"), "nvapi-…ghij");
        assert_eq!(mask("sk-or-v1-0123456789abcdef0123"), "sk-or-…0123");
        assert_eq!(
            mask("0123456789abcdefghijklmnop"),
            "…mnop",
            "opaque keys: no prefix"
        );
    }

    #[test]
    fn short_or_non_ascii_keys_show_nothing() {
        assert_eq!(mask(""), "••••");
        assert_eq!(mask("sk-1234567890123456"), "••••", "19 characters");
        assert_eq!(mask("sk-12345678901234567"), "sk-…4567", "20 characters");
        assert_eq!(mask("ключ-ключ-ключ-ключ-ключ"), "••••");
    }

    #[test]
    fn hints_never_contain_the_middle_of_the_key() {
        let key = "sk-proj-SECRETMIDDLEPART-abcd";
        let hint = mask(key);
        assert!(!hint.contains("SECRET"));
        assert!(hint.chars().count() < key.len() / 2);
    }

    #[test]
    fn scopes_round_trip_through_text() {
        for scope in CredentialScope::ALL {
            assert_eq!(scope.as_str().parse::<CredentialScope>(), Ok(scope));
        }
        assert!("admin".parse::<CredentialScope>().is_err());
    }
}

/// A provider key as typed into a form, on its way to the server. It must serialize (the browser
/// sends it), but its `Debug` never shows it, and the server turns it into a zeroizing secret at
/// once. Never part of a response.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyInput(String);

impl KeyInput {
    pub fn new(key: impl Into<String>) -> Self {
        KeyInput(key.into())
    }

    /// Takes the key out (the server wraps it in a secret type immediately).
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for KeyInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyInput(<redacted>)")
    }
}

#[cfg(test)]
mod key_input_tests {
    use super::KeyInput;

    #[test]
    fn debug_never_shows_the_key() {
        let k = KeyInput::new("sk-canary-1234567890abcdef");
        assert!(!format!("{k:?}").contains("canary"));
        assert!(!format!("{:?}", Some(&k)).contains("1234"));
    }
}
