//! The public API's two wire formats — OpenAI chat completions and Anthropic Messages: how a
//! model id names a provider, and how a failure is told in each format's own error shape
//! (status, `type`, `code`), so that the official SDKs raise their usual exception classes.

use crate::catalogue;
use crate::keys::ErrorClass;

/// Which wire format a public endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// `/v1/chat/completions`, `/v1/models`.
    OpenAi,
    /// `/v1/messages`.
    Anthropic,
}

/// Splits a public model id: `provider/model` names a provider of the catalogue; anything else
/// (a bare id, or an id whose first segment is not a provider, like OpenRouter's
/// `meta-llama/llama-3`) is a model of the default provider.
pub fn split_model(id: &str) -> (Option<&'static str>, &str) {
    if let Some((head, rest)) = id.split_once('/')
        && let Some(p) = catalogue::provider(head)
        && !rest.is_empty()
    {
        return (Some(p.id), rest);
    }
    (None, id)
}

/// The public id of a provider's model.
pub fn model_id(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

/// What went wrong, as the API tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// 400: the request is malformed or asks for something impossible.
    InvalidRequest,
    /// 401: no token, or not a live token.
    Authentication,
    /// 403: the token lacks the scope.
    Permission,
    /// 404: no such model or route.
    NotFound,
    /// 413: the body is too large.
    TooLarge,
    /// 429: the provider rate-limited the key.
    RateLimited,
    /// 429 (OpenAI) / 402 (Anthropic): the provider account has no quota left, or the workspace
    /// has no credits for the platform key.
    Billing,
    /// 429: a Keyward budget is spent (OpenAI's `insufficient_quota`, Anthropic's
    /// `rate_limit_error`); retrying before the window resets fails again.
    Quota,
    /// 502: the provider refused the workspace's stored key.
    UpstreamKey,
    /// 503: the provider failed, timed out or could not be reached.
    Unavailable,
    /// 500: our side failed (logged).
    Internal,
}

impl FailureKind {
    pub fn status(self, wire: Wire) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Authentication => 401,
            Self::Permission => 403,
            Self::NotFound => 404,
            Self::TooLarge => 413,
            Self::RateLimited | Self::Quota => 429,
            Self::Billing => match wire {
                Wire::OpenAi => 429,
                Wire::Anthropic => 402,
            },
            Self::UpstreamKey => 502,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// OpenAI's `error.type`.
    pub fn openai_type(self) -> &'static str {
        match self {
            Self::InvalidRequest | Self::NotFound | Self::TooLarge | Self::Authentication => {
                "invalid_request_error"
            }
            Self::Permission => "permission_error",
            Self::RateLimited => "rate_limit_error",
            Self::Billing | Self::Quota => "insufficient_quota",
            Self::UpstreamKey | Self::Unavailable => "api_error",
            Self::Internal => "server_error",
        }
    }

    /// Anthropic's `error.type`.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::TooLarge => "request_too_large",
            Self::RateLimited | Self::Quota => "rate_limit_error",
            Self::Billing => "billing_error",
            Self::UpstreamKey | Self::Internal => "api_error",
            Self::Unavailable => "overloaded_error",
        }
    }

    /// Whether a client may usefully retry (the SDKs read `x-should-retry`): a refused key or a
    /// refused request fails again.
    pub fn retry(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable)
    }
}

/// A failure of the provider call, as the API tells it; `code` names the cause precisely.
pub fn upstream_failure(class: ErrorClass) -> (FailureKind, &'static str) {
    match class {
        ErrorClass::InvalidKey => (FailureKind::UpstreamKey, "provider_key_rejected"),
        ErrorClass::NoQuota => (FailureKind::Billing, "provider_quota_exhausted"),
        ErrorClass::RateLimited => (FailureKind::RateLimited, "provider_rate_limited"),
        ErrorClass::ProviderUnavailable => (FailureKind::Unavailable, "provider_unavailable"),
        ErrorClass::Rejected => (FailureKind::InvalidRequest, "provider_rejected_request"),
    }
}

/// OpenAI's `finish_reason` → Anthropic's `stop_reason`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_name_a_provider_only_when_the_prefix_is_one() {
        assert_eq!(split_model("openai/gpt-4o"), (Some("openai"), "gpt-4o"));
        assert_eq!(
            split_model("openrouter/meta-llama/llama-3"),
            (Some("openrouter"), "meta-llama/llama-3")
        );
        assert_eq!(split_model("gpt-4o"), (None, "gpt-4o"));
        assert_eq!(
            split_model("meta-llama/llama-3"),
            (None, "meta-llama/llama-3")
        );
        assert_eq!(split_model("openai/"), (None, "openai/"));
        assert_eq!(model_id("groq", "llama"), "groq/llama");
    }

    #[test]
    fn each_format_gets_its_own_status_and_type() {
        assert_eq!(FailureKind::Billing.status(Wire::OpenAi), 429);
        assert_eq!(FailureKind::Billing.status(Wire::Anthropic), 402);
        assert_eq!(
            FailureKind::Authentication.anthropic_type(),
            "authentication_error"
        );
        assert_eq!(
            FailureKind::Authentication.openai_type(),
            "invalid_request_error"
        );
        assert_eq!(FailureKind::NotFound.anthropic_type(), "not_found_error");
        assert!(!FailureKind::UpstreamKey.retry());
        assert!(FailureKind::Unavailable.retry());
    }

    #[test]
    fn provider_failures_map_to_what_a_client_can_act_on() {
        assert_eq!(
            upstream_failure(ErrorClass::InvalidKey),
            (FailureKind::UpstreamKey, "provider_key_rejected")
        );
        assert_eq!(
            upstream_failure(ErrorClass::ProviderUnavailable).0,
            FailureKind::Unavailable
        );
        assert_eq!(
            upstream_failure(ErrorClass::Rejected).0,
            FailureKind::InvalidRequest
        );
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(None), "end_turn");
    }
}
