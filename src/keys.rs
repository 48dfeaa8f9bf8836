//! Stored keys as the domain sees them: their lifecycle status, how a failure at the provider is
//! classified, where BYOK is allowed, and what a workspace does when its own key fails.

use crate::policy::Plan;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What the owner set on a stored key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Disabled,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

impl FromStr for KeyStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            _ => Err(()),
        }
    }
}

/// What a key row shows: the owner's setting combined with the platform's BYOK switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Active,
    Disabled,
    /// Kept, but not used: the platform turned BYOK off for this provider or this plan.
    InactiveByok,
}

impl KeyState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Disabled => "Disabled",
            Self::InactiveByok => "Inactive: BYOK disabled by the platform",
        }
    }
}

/// The state of a workspace or chatbot key given the platform's BYOK decision. Platform keys are
/// never subject to BYOK switches.
pub fn key_state(status: KeyStatus, byok_allowed: bool) -> KeyState {
    match (status, byok_allowed) {
        (KeyStatus::Disabled, _) => KeyState::Disabled,
        (KeyStatus::Active, false) => KeyState::InactiveByok,
        (KeyStatus::Active, true) => KeyState::Active,
    }
}

/// The small set of reasons a provider call with a key fails (DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// 401/403: the provider does not accept the key (wrong, revoked, lacking permission).
    InvalidKey,
    /// The account behind the key has no credit or quota left.
    NoQuota,
    /// 429 without a quota reason: slow down and retry later.
    RateLimited,
    /// 5xx, timeouts, refused or reset connections, streams cut midway.
    ProviderUnavailable,
    /// Any other refusal (400, 404, unexpected answers): the request, not the key, is at fault.
    Rejected,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 5] = [
        Self::InvalidKey,
        Self::NoQuota,
        Self::RateLimited,
        Self::ProviderUnavailable,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidKey => "invalid_key",
            Self::NoQuota => "no_quota",
            Self::RateLimited => "rate_limited",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::Rejected => "rejected",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::InvalidKey => "Invalid key",
            Self::NoQuota => "No quota",
            Self::RateLimited => "Rate limited",
            Self::ProviderUnavailable => "Provider unavailable",
            Self::Rejected => "Request rejected",
        }
    }

    /// Classifies an upstream HTTP status. `body_says_quota` is whether the provider's error
    /// body names a quota or billing problem (OpenAI answers 429 `insufficient_quota`).
    pub fn from_status(status: u16, body_says_quota: bool) -> Self {
        match status {
            401 | 403 => Self::InvalidKey,
            402 => Self::NoQuota,
            429 if body_says_quota => Self::NoQuota,
            429 => Self::RateLimited,
            408 | 500..=599 => Self::ProviderUnavailable,
            _ => Self::Rejected,
        }
    }
}

impl FromStr for ErrorClass {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or(())
    }
}

/// What happens when a workspace's own key fails at the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The request fails; visitors see a friendly error, the owner the reason on the key row.
    #[default]
    FailClosed,
    /// Retry once with the platform key, charging credits.
    FallbackToPlatform,
}

impl FailurePolicy {
    pub const ALL: [FailurePolicy; 2] = [Self::FailClosed, Self::FallbackToPlatform];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail_closed",
            Self::FallbackToPlatform => "fallback_to_platform",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::FailClosed => "Fail closed: show an error",
            Self::FallbackToPlatform => "Fall back to the platform key (uses credits)",
        }
    }
}

impl FromStr for FailurePolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

/// The plans that may bring their own keys unless the platform admin says otherwise.
pub const DEFAULT_BYOK_PLANS: &[Plan] = &[Plan::Pro, Plan::Business];

/// Whether a workspace on `plan` may use its own key for a provider: the provider's switch must
/// be on and the plan must be among those allowed BYOK.
pub fn byok_allowed(provider_switch: bool, plan: Plan, byok_plans: &[Plan]) -> bool {
    provider_switch && byok_plans.contains(&plan)
}

/// Encodes a plan set for storage (`"pro,business"`).
pub fn plans_to_text(plans: &[Plan]) -> String {
    Plan::ALL
        .iter()
        .filter(|p| plans.contains(p))
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Decodes a stored plan set; unknown entries are dropped (fail towards less BYOK).
pub fn plans_from_text(text: &str) -> Vec<Plan> {
    text.split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// Longest default-model id accepted.
pub const MAX_MODEL_LEN: usize = 200;

/// The host (and port, when one is written) a base URL sends keys to: what owners see on each
/// key, so that no one can point their keys elsewhere unseen. `https://api.openai.com/v1` →
/// `api.openai.com`; `http://10.0.0.5:8000/v1` → `10.0.0.5:8000`.
pub fn destination_host(base_url: &str) -> String {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host.to_ascii_lowercase()
}

/// Checks an owner-given model id: printable ASCII without spaces, at most 200 characters.
pub fn parse_model(model: &str) -> Result<Option<String>, &'static str> {
    let model = model.trim();
    if model.is_empty() {
        return Ok(None);
    }
    if model.len() > MAX_MODEL_LEN {
        return Err("the model id is too long (at most 200 characters)");
    }
    if !model.chars().all(|c| c.is_ascii_graphic()) {
        return Err("the model id may contain only printable characters without spaces");
    }
    Ok(Some(model.to_string()))
}

#[cfg(test)]
mod destination_tests {
    use super::destination_host;

    #[test]
    fn the_destination_is_the_host_and_any_written_port() {
        assert_eq!(
            destination_host("https://api.openai.com/v1"),
            "api.openai.com"
        );
        assert_eq!(destination_host("http://10.0.0.5:8000/v1"), "10.0.0.5:8000");
        assert_eq!(
            destination_host("https://API.Example.com"),
            "api.example.com"
        );
        assert_eq!(
            destination_host("https://[2001:db8::1]:8443/v1"),
            "[2001:db8::1]:8443"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_statuses_fall_into_the_documented_classes() {
        use ErrorClass::*;
        for (status, quota, class) in [
            (401, false, InvalidKey),
            (403, false, InvalidKey),
            (402, false, NoQuota),
            (429, true, NoQuota),
            (429, false, RateLimited),
            (408, false, ProviderUnavailable),
            (500, false, ProviderUnavailable),
            (503, false, ProviderUnavailable),
            (400, false, Rejected),
            (404, false, Rejected),
        ] {
            assert_eq!(ErrorClass::from_status(status, quota), class, "{status}");
        }
        for class in ErrorClass::ALL {
            assert_eq!(class.as_str().parse(), Ok(class));
        }
    }

    #[test]
    fn byok_needs_both_the_provider_switch_and_the_plan() {
        let plans = DEFAULT_BYOK_PLANS;
        assert!(byok_allowed(true, Plan::Pro, plans));
        assert!(byok_allowed(true, Plan::Business, plans));
        assert!(!byok_allowed(true, Plan::Free, plans));
        assert!(!byok_allowed(false, Plan::Business, plans));
        assert_eq!(
            key_state(KeyStatus::Active, false),
            KeyState::InactiveByok,
            "kept, shown inactive"
        );
        assert_eq!(key_state(KeyStatus::Disabled, false), KeyState::Disabled);
        assert_eq!(key_state(KeyStatus::Active, true), KeyState::Active);
    }

    #[test]
    fn plan_sets_round_trip_and_unknown_entries_are_dropped() {
        assert_eq!(plans_to_text(DEFAULT_BYOK_PLANS), "pro,business");
        assert_eq!(
            plans_from_text("business, pro"),
            [Plan::Business, Plan::Pro]
        );
        assert_eq!(plans_from_text("gold,free"), [Plan::Free]);
        assert!(plans_from_text("").is_empty());
    }

    #[test]
    fn model_ids_are_checked() {
        assert_eq!(parse_model("  "), Ok(None));
        assert_eq!(parse_model("gpt-4o"), Ok(Some("gpt-4o".into())));
        assert!(parse_model("gpt 4o").is_err());
        assert!(parse_model(&"m".repeat(201)).is_err());
        for p in FailurePolicy::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
        }
        assert_eq!(FailurePolicy::default(), FailurePolicy::FailClosed);
    }
}
