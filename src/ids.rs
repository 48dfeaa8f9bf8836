//! Typed ids and the key scope: what the dashboard's server functions and the management REST
//! API take as input, instead of bare strings with empty-string sentinels.
//!
//! An id that does not parse is [`NoSuch`]: to a caller it is indistinguishable from another
//! tenant's id (both are "not found").

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A malformed id, or a scope that names nothing: answered as "not found".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not found")]
pub struct NoSuch;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl FromStr for $name {
            type Err = NoSuch;
            fn from_str(s: &str) -> Result<Self, NoSuch> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| NoSuch)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    )*};
}

ids! {
    /// A workspace.
    WorkspaceId;
    /// A chatbot of a workspace.
    ChatbotId;
    /// A stored provider key (a credential).
    KeyId;
    /// A workspace API token.
    TokenId;
    /// A user account.
    UserId;
}

/// Whose provider keys: the platform's, a workspace's own, or one chatbot's. Written as one
/// string — `platform`, `{workspace}` or `{workspace}/{chatbot}` — so that it travels as a single
/// form field or path segment; nothing else parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyScope {
    Platform,
    Workspace(WorkspaceId),
    Chatbot {
        workspace: WorkspaceId,
        chatbot: ChatbotId,
    },
}

impl KeyScope {
    /// The workspace the keys belong to (`None`: the platform's).
    pub fn workspace(self) -> Option<WorkspaceId> {
        match self {
            Self::Platform => None,
            Self::Workspace(w) | Self::Chatbot { workspace: w, .. } => Some(w),
        }
    }

    /// A workspace's scope, narrowed to one of its chatbots when one is given.
    pub fn of(workspace: WorkspaceId, chatbot: Option<ChatbotId>) -> Self {
        match chatbot {
            Some(chatbot) => Self::Chatbot { workspace, chatbot },
            None => Self::Workspace(workspace),
        }
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Platform => f.write_str("platform"),
            Self::Workspace(w) => write!(f, "{w}"),
            Self::Chatbot { workspace, chatbot } => write!(f, "{workspace}/{chatbot}"),
        }
    }
}

impl FromStr for KeyScope {
    type Err = NoSuch;
    fn from_str(s: &str) -> Result<Self, NoSuch> {
        match s.trim() {
            "platform" => Ok(Self::Platform),
            s => match s.split_once('/') {
                Some((w, c)) => Ok(Self::Chatbot {
                    workspace: w.parse()?,
                    chatbot: c.parse()?,
                }),
                None => Ok(Self::Workspace(s.parse()?)),
            },
        }
    }
}

impl Serialize for KeyScope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyScope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("not a key scope"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = "0192c3a4-0000-7000-8000-000000000001";
    const C: &str = "0192c3a4-0000-7000-8000-000000000002";

    #[test]
    fn a_scope_round_trips_through_its_one_string() {
        let w: WorkspaceId = W.parse().unwrap();
        let c: ChatbotId = C.parse().unwrap();
        for scope in [
            KeyScope::Platform,
            KeyScope::Workspace(w),
            KeyScope::Chatbot {
                workspace: w,
                chatbot: c,
            },
        ] {
            assert_eq!(scope.to_string().parse::<KeyScope>(), Ok(scope));
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(serde_json::from_str::<KeyScope>(&json).unwrap(), scope);
        }
        assert_eq!(KeyScope::of(w, Some(c)).workspace(), Some(w));
        assert_eq!(KeyScope::Platform.workspace(), None);
    }

    #[test]
    fn nothing_else_parses_and_empty_is_not_the_platform() {
        for bad in [
            "",
            " ",
            "x",
            "platform/",
            &format!("{W}/"),
            &format!("/{C}"),
            &format!("{W}/{C}/x"),
        ] {
            assert_eq!(bad.parse::<KeyScope>(), Err(NoSuch), "{bad:?}");
        }
        assert_eq!("nope".parse::<KeyId>(), Err(NoSuch));
        assert!(serde_json::from_str::<KeyScope>("\"\"").is_err());
    }
}
