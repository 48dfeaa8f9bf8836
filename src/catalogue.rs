//! The provider catalogue (DESIGN.md §9): data, not code paths. Each entry says how to reach the
//! provider, what its keys look like, its default model and where an owner gets a key. These are
//! the built-in defaults; the platform admin's overrides are stored by the server.

use serde::{Deserialize, Serialize};

/// How a provider is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireFormat {
    /// OpenAI chat completions (and the many compatible APIs).
    OpenAi,
    /// Anthropic Messages, translated natively.
    Anthropic,
}

/// What a provider's keys look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRule {
    /// Keys start with one of these prefixes.
    Prefix(&'static [&'static str]),
    /// The provider publishes no shape; only general sanity checks apply.
    Opaque,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provider {
    /// Stable id, used in URLs, the database and `provider/model` ids.
    pub id: &'static str,
    pub name: &'static str,
    pub wire: WireFormat,
    /// `None` for Custom: the owner gives an https base URL.
    pub default_base_url: Option<&'static str>,
    pub key_rule: KeyRule,
    /// `None` where the provider's own model list decides.
    pub default_model: Option<&'static str>,
    /// Where an owner creates a key.
    pub key_url: Option<&'static str>,
}

pub const CUSTOM: &str = "custom";

pub const PROVIDERS: &[Provider] = &[
    Provider {
        id: "openai",
        name: "OpenAI",
        wire: WireFormat::OpenAi,
        default_base_url: Some("https://api.openai.com/v1"),
        key_rule: KeyRule::Prefix(&["sk-"]),
        default_model: Some("gpt-4o-mini"),
        key_url: Some("https://platform.openai.com/api-keys"),
    },
    Provider {
        id: "anthropic",
        name: "Anthropic",
        wire: WireFormat::Anthropic,
        default_base_url: Some("https://api.anthropic.com"),
        key_rule: KeyRule::Prefix(&["sk-ant-"]),
        default_model: Some("claude-haiku-4-5"),
        key_url: Some("https://console.anthropic.com/settings/keys"),
    },
    Provider {
        id: "groq",
        name: "Groq",
        wire: WireFormat::OpenAi,
        default_base_url: Some("https://api.groq.com/openai/v1"),
        key_rule: KeyRule::Prefix(&["gsk_"]),
        default_model: Some("llama-3.1-70b-versatile"),
        key_url: Some("https://console.groq.com/keys"),
    },
    Provider {
        id: "deepseek",
        name: "DeepSeek",
        wire: WireFormat::OpenAi,
        default_base_url: Some("https://api.deepseek.com"),
        key_rule: KeyRule::Prefix(&["sk-"]),
        default_model: Some("deepseek-chat"),
        key_url: Some("https://platform.deepseek.com/api_keys"),
    },
    Provider {
        id: "gemini",
        name: "Google Gemini",
        wire: WireFormat::OpenAi,
        default_base_url: Some("https://generativelanguage.googleapis.com/v1beta/openai"),
        key_rule: KeyRule::Prefix(&["AIza"]),
        default_model: Some("gemini-2.0-flash"),
        key_url: Some("https://aistudio.google.com/app/apikey"),
    },
    Provider {
        id: "mistral",
        name: "Mistral",
        wire: WireFormat::OpenAi,
        default_base_url: Some("https://api.mistral.ai/v1"),
        key_rule: KeyRule::Opaque,
        default_model: Some("mistral-small-latest"),
        key_url: Some("https://console.mistral.ai/api-keys"),
    },
    Provider {
        id: "together",
        name: "Together AI",
        wire: WireFormat::OpenAi,
        default_base_url: Some("https://api.together.xyz/v1"),
        key_rule: KeyRule::Opaque,
        default_model: None,
        key_url: Some("https://api.together.ai/settings/api-keys"),
    },
    Provider {
        id: "openrouter",
        name: "OpenRouter",
        wire: WireFormat::OpenAi,
        default_base_url: Some("https://openrouter.ai/api/v1"),
        key_rule: KeyRule::Prefix(&["sk-or-"]),
        default_model: None,
        key_url: Some("https://openrouter.ai/keys"),
    },
    Provider {
        id: "nvidia",
        name: "NVIDIA NIM",
        wire: WireFormat::OpenAi,
        default_base_url: Some("https://integrate.api.nvidia.com/v1"),
        key_rule: KeyRule::Prefix(&["nvapi-"]),
        default_model: None,
        key_url: Some("https://build.nvidia.com/"),
    },
    Provider {
        id: CUSTOM,
        name: "Custom (OpenAI-compatible)",
        wire: WireFormat::OpenAi,
        default_base_url: None,
        key_rule: KeyRule::Opaque,
        default_model: None,
        key_url: None,
    },
];

fn quoted(prefixes: &[&str]) -> String {
    prefixes
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(" or ")
}

impl Provider {
    /// What the provider's keys look like, for people (`starts with "gsk_"`); `None` where the
    /// provider publishes no shape.
    pub fn key_shape(&self) -> Option<String> {
        match self.key_rule {
            KeyRule::Prefix(prefixes) => Some(format!("starts with {}", quoted(prefixes))),
            KeyRule::Opaque => None,
        }
    }
}

pub fn provider(id: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.id == id)
}

/// Shortest and longest key accepted (the vault stores at most 8 KiB).
pub const MIN_KEY_LEN: usize = 8;
pub const MAX_KEY_LEN: usize = 8 * 1024;

/// Why a key was refused. Messages say what is wrong and never repeat the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyShapeError {
    #[error("unknown provider")]
    UnknownProvider,
    #[error("the key is empty")]
    Empty,
    #[error("the key is too short to be a real key")]
    TooShort,
    #[error("the key is too long (at most 8192 characters)")]
    TooLong,
    #[error("the key contains spaces, line breaks or non-printable characters; paste only the key")]
    BadCharacters,
    #[error("{provider} keys start with {expected}; check that you copied the whole key")]
    WrongPrefix {
        provider: &'static str,
        expected: String,
    },
    #[error("this looks like a key for {other}, not for {provider}")]
    OtherProvider {
        provider: &'static str,
        other: &'static str,
    },
}

/// Checks that `key` could be a key of `provider_id`, before any network call. Surrounding
/// whitespace is ignored (pasted keys often carry a newline).
pub fn check_key_shape(provider_id: &str, key: &str) -> Result<(), KeyShapeError> {
    let provider = provider(provider_id).ok_or(KeyShapeError::UnknownProvider)?;
    let key = key.trim();
    if key.is_empty() {
        return Err(KeyShapeError::Empty);
    }
    if key
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(KeyShapeError::BadCharacters);
    }
    if key.len() < MIN_KEY_LEN {
        return Err(KeyShapeError::TooShort);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyShapeError::TooLong);
    }
    // A key with another provider's distinctive prefix was pasted into the wrong row. The
    // shared "sk-" prefix says nothing; Custom endpoints may take any provider's keys.
    let own: &[&str] = match provider.key_rule {
        KeyRule::Prefix(p) => p,
        KeyRule::Opaque => &[],
    };
    let own_match = own
        .iter()
        .filter(|o| key.starts_with(**o))
        .map(|o| o.len())
        .max()
        .unwrap_or(0);
    let best = PROVIDERS
        .iter()
        .flat_map(|p| match p.key_rule {
            KeyRule::Prefix(prefixes) => prefixes.iter().map(move |pre| (p, *pre)).collect(),
            KeyRule::Opaque => Vec::new(),
        })
        .filter(|(_, pre)| *pre != "sk-" && key.starts_with(pre))
        .max_by_key(|(_, pre)| pre.len());
    if let Some((other, pre)) = best
        && other.id != provider.id
        && provider.id != CUSTOM
        && pre.len() > own_match
    {
        return Err(KeyShapeError::OtherProvider {
            provider: provider.name,
            other: other.name,
        });
    }
    if let KeyRule::Prefix(prefixes) = provider.key_rule
        && !prefixes.iter().any(|p| key.starts_with(p))
    {
        return Err(KeyShapeError::WrongPrefix {
            provider: provider.name,
            expected: quoted(prefixes),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_matches_the_design_table() {
        let ids: Vec<&str> = PROVIDERS.iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            [
                "openai",
                "anthropic",
                "groq",
                "deepseek",
                "gemini",
                "mistral",
                "together",
                "openrouter",
                "nvidia",
                "custom"
            ]
        );
        assert_eq!(provider("anthropic").unwrap().wire, WireFormat::Anthropic);
        assert_eq!(
            provider("openai").unwrap().default_model,
            Some("gpt-4o-mini")
        );
        assert_eq!(
            provider("gemini").unwrap().default_model,
            Some("gemini-2.0-flash")
        );
        for p in PROVIDERS {
            if let Some(url) = p.default_base_url {
                assert!(url.starts_with("https://"), "{}", p.id);
            }
            assert_eq!(p.key_url.is_none(), p.id == CUSTOM, "{}", p.id);
        }
    }

    #[test]
    fn well_shaped_keys_pass() {
        for (provider, key) in [
            ("openai", "sk-abcdefghijklmnopqrstuvwx"),
            ("openai", "sk-proj-abcdefghijklmnopqrstuvwx"),
            ("anthropic", "sk-ant-api03-abcdefghijklmnop"),
            ("groq", "gsk_abcdefghijklmnopqrstuv"),
            ("deepseek", "sk-0123456789abcdef0123"),
            ("gemini", "AIzaSyA0123456789abcdefghijk"),
            ("mistral", "0123456789ABCDEFabcdef0123456789"),
            ("openrouter", "sk-or-v1-0123456789abcdef"),
            ("nvidia", "nvapi-0123456789abcdefghij"),
            ("custom", "anything-goes-here"),
            ("custom", "sk-ant-api03-abcdefghijklmnop"),
            ("openai", "  sk-abcdefghijklmnopqrstuvwx\n"),
        ] {
            assert_eq!(check_key_shape(provider, key), Ok(()), "{provider}");
        }
    }

    #[test]
    fn misshapen_keys_get_helpful_messages_that_never_echo_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("openai", "", "empty"),
            ("openai", "sk-1234", "too short"),
            ("openai", "sk-abc def ghijklmnopqrstu", "spaces"),
            (
                "groq",
                "sk-abcdefghijklmnopqrstuvwx",
                "Groq keys start with \"gsk_\"",
            ),
            (
                "openai",
                "sk-ant-api03-abcdefghijklmnop",
                "looks like a key for Anthropic",
            ),
            (
                "openai",
                "sk-or-v1-abcdefghijklmnopqrs",
                "looks like a key for OpenRouter",
            ),
            (
                "mistral",
                "gsk_abcdefghijklmnopqrstuv",
                "looks like a key for Groq",
            ),
            (
                "anthropic",
                "AIzaSyA0123456789abcdefghijk",
                "looks like a key for Google Gemini",
            ),
            ("nope", "sk-abcdefghijklmnopqrstuvwx", "unknown provider"),
        ];
        for (provider, key, needle) in cases {
            let err = check_key_shape(provider, key)
                .expect_err(needle)
                .to_string();
            assert!(err.contains(needle), "{provider}: {err}");
            if key.len() >= 8 {
                assert!(!err.contains(key.trim()), "echoed: {err}");
                assert!(
                    !err.contains(&key.trim()[key.trim().len() - 6..]),
                    "tail echoed: {err}"
                );
            }
        }
        let long = format!("sk-{}", "a".repeat(9000));
        assert_eq!(
            check_key_shape("openai", &long),
            Err(KeyShapeError::TooLong)
        );
    }
}
