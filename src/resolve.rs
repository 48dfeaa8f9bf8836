//! The resolution chain (DESIGN.md §4): which stored key serves a request for provider P in
//! workspace W, optionally through chatbot C. Pure: the server gathers the candidates (from its
//! cache) and asks [`resolve`].
//!
//! 1. The platform disabled BYOK for P, or W's plan has no BYOK → the platform key.
//! 2. An active chatbot key of C for P (source `chatbot`).
//! 3. An active workspace key of W for P (source `workspace`).
//! 4. The platform key for P (source `platform`, charged in credits).
//! 5. Otherwise a clear "no key configured" error.
//!
//! With the `fallback_to_platform` failure policy, a BYOK resolution also names the platform key
//! to retry with once if the provider refuses the BYOK key.

use crate::keys::FailurePolicy;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which key served a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    Chatbot,
    Workspace,
    Platform,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chatbot => "chatbot",
            Self::Workspace => "workspace",
            Self::Platform => "platform",
        }
    }

    /// Bring-your-own-key traffic (chatbot or workspace key).
    pub fn is_byok(self) -> bool {
        !matches!(self, Self::Platform)
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored key that could serve the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<K> {
    pub id: K,
    /// Enabled by its owner (a disabled key is never used).
    pub active: bool,
    /// The key's own default model, if its owner set one.
    pub default_model: Option<String>,
}

/// Everything the chain looks at, for one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs<'a, K> {
    pub provider: &'a str,
    /// The platform's BYOK switch for this provider.
    pub provider_byok: bool,
    /// Whether the workspace's plan may bring its own keys.
    pub plan_byok: bool,
    pub policy: FailurePolicy,
    pub chatbot: Option<Candidate<K>>,
    pub workspace: Option<Candidate<K>>,
    pub platform: Option<Candidate<K>>,
    /// The model the caller asked for (`None`: the key's or provider's default).
    pub requested_model: Option<&'a str>,
    /// The provider's default model (catalogue, or the admin's override).
    pub provider_default_model: Option<&'a str>,
}

/// The chain's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved<K> {
    pub source: KeySource,
    pub key: K,
    pub provider: String,
    pub model: String,
    /// The platform key to retry with once if the BYOK key fails (fallback policy only).
    pub fallback: Option<K>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no key is configured for {provider}")]
    NoKey { provider: String },
    #[error("no model was given and {provider} has no default model")]
    NoModel { provider: String },
}

fn usable<K: Clone>(c: &Option<Candidate<K>>) -> Option<&Candidate<K>> {
    c.as_ref().filter(|c| c.active)
}

pub fn resolve<K: Clone>(input: &Inputs<'_, K>) -> Result<Resolved<K>, ResolveError> {
    let byok = input.provider_byok && input.plan_byok;
    let platform = usable(&input.platform);
    let (source, chosen) = match (
        byok,
        usable(&input.chatbot),
        usable(&input.workspace),
        platform,
    ) {
        (true, Some(c), _, _) => (KeySource::Chatbot, c),
        (true, None, Some(w), _) => (KeySource::Workspace, w),
        (_, _, _, Some(p)) => (KeySource::Platform, p),
        _ => {
            return Err(ResolveError::NoKey {
                provider: input.provider.to_string(),
            });
        }
    };
    let model = input
        .requested_model
        .map(str::to_string)
        .or_else(|| chosen.default_model.clone())
        .or_else(|| input.provider_default_model.map(str::to_string))
        .ok_or_else(|| ResolveError::NoModel {
            provider: input.provider.to_string(),
        })?;
    let fallback = match (source.is_byok(), input.policy, platform) {
        (true, FailurePolicy::FallbackToPlatform, Some(p)) => Some(p.id.clone()),
        _ => None,
    };
    Ok(Resolved {
        source,
        key: chosen.id.clone(),
        provider: input.provider.to_string(),
        model,
        fallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> Option<Candidate<u32>> {
        Some(Candidate {
            id,
            active: true,
            default_model: None,
        })
    }

    fn off(id: u32) -> Option<Candidate<u32>> {
        Some(Candidate {
            id,
            active: false,
            default_model: None,
        })
    }

    fn base() -> Inputs<'static, u32> {
        Inputs {
            provider: "openai",
            provider_byok: true,
            plan_byok: true,
            policy: FailurePolicy::FailClosed,
            chatbot: key(1),
            workspace: key(2),
            platform: key(3),
            requested_model: None,
            provider_default_model: Some("gpt-4o-mini"),
        }
    }

    fn pick(i: &Inputs<'_, u32>) -> Result<(KeySource, u32, Option<u32>), ResolveError> {
        resolve(i).map(|r| (r.source, r.key, r.fallback))
    }

    #[test]
    fn chatbot_beats_workspace_beats_platform() {
        use KeySource::*;
        let mut i = base();
        assert_eq!(pick(&i), Ok((Chatbot, 1, None)));
        i.chatbot = None;
        assert_eq!(pick(&i), Ok((Workspace, 2, None)));
        i.workspace = None;
        assert_eq!(pick(&i), Ok((Platform, 3, None)));
        i.platform = None;
        assert_eq!(
            pick(&i),
            Err(ResolveError::NoKey {
                provider: "openai".into()
            })
        );
    }

    #[test]
    fn disabled_keys_are_skipped() {
        use KeySource::*;
        let mut i = base();
        i.chatbot = off(1);
        assert_eq!(pick(&i), Ok((Workspace, 2, None)));
        i.workspace = off(2);
        assert_eq!(pick(&i), Ok((Platform, 3, None)));
        i.platform = off(3);
        assert!(pick(&i).is_err(), "a disabled platform key is no key");
    }

    #[test]
    fn byok_switches_send_everyone_to_the_platform_key() {
        use KeySource::*;
        for (provider_byok, plan_byok) in [(false, true), (true, false), (false, false)] {
            let mut i = base();
            i.provider_byok = provider_byok;
            i.plan_byok = plan_byok;
            assert_eq!(pick(&i), Ok((Platform, 3, None)));
            i.platform = None;
            assert!(
                matches!(pick(&i), Err(ResolveError::NoKey { .. })),
                "BYOK off and no platform key: the workspace key is not used"
            );
        }
    }

    #[test]
    fn the_fallback_policy_names_the_platform_key_for_byok_only() {
        use KeySource::*;
        let mut i = base();
        i.policy = FailurePolicy::FallbackToPlatform;
        assert_eq!(pick(&i), Ok((Chatbot, 1, Some(3))));
        i.chatbot = None;
        assert_eq!(pick(&i), Ok((Workspace, 2, Some(3))));
        i.platform = off(3);
        assert_eq!(pick(&i), Ok((Workspace, 2, None)), "no usable platform key");
        i.platform = key(3);
        i.workspace = None;
        assert_eq!(pick(&i), Ok((Platform, 3, None)), "no fallback from itself");
        let mut closed = base();
        closed.chatbot = None;
        assert_eq!(pick(&closed), Ok((Workspace, 2, None)));
    }

    #[test]
    fn the_model_is_requested_then_the_keys_then_the_providers() {
        let mut i = base();
        assert_eq!(resolve(&i).unwrap().model, "gpt-4o-mini");
        i.chatbot = Some(Candidate {
            id: 1,
            active: true,
            default_model: Some("gpt-4o".into()),
        });
        assert_eq!(resolve(&i).unwrap().model, "gpt-4o");
        i.requested_model = Some("o3-mini");
        assert_eq!(resolve(&i).unwrap().model, "o3-mini");
        let mut none = base();
        none.provider_default_model = None;
        assert_eq!(
            resolve(&none),
            Err(ResolveError::NoModel {
                provider: "openai".into()
            })
        );
        assert_eq!(
            resolve(&none).unwrap_err().to_string(),
            "no model was given and openai has no default model"
        );
    }
}
