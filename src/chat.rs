//! What the chat surfaces exchange: the visitor chat page and the dashboard playground send a
//! [`ChatSend`] and read back a stream of [`ChatEvent`]s (server-sent events, one JSON document
//! each); history comes as [`ChatMessageView`]s. Shared by the server and the wasm client.

use crate::dto::{ModelOption, WorkspaceSummary};
use crate::resolve::KeySource;
use serde::{Deserialize, Serialize};

/// The longest message a user may send, in characters.
pub const MAX_MESSAGE_CHARS: usize = 16_000;

/// The longest reply Keyward keeps of one answer (to store it, or to estimate its tokens), in
/// bytes. The rest is still forwarded to the reader, but not kept.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// Appends `piece` to `reply` while the reply stays within [`MAX_REPLY_BYTES`], cut on a
/// character boundary. Returns whether all of it fit.
pub fn push_capped(reply: &mut String, piece: &str) -> bool {
    let room = MAX_REPLY_BYTES.saturating_sub(reply.len());
    if piece.len() <= room {
        reply.push_str(piece);
        return true;
    }
    let mut end = room;
    while !piece.is_char_boundary(end) {
        end -= 1;
    }
    reply.push_str(&piece[..end]);
    false
}

/// The user's new message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatSend {
    pub message: String,
    /// `provider/model` for this one message; `None`: the chatbot's default.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation to continue; `None` starts one.
    #[serde(default)]
    pub conversation: Option<String>,
    /// Dashboard playground only: the chatbot whose prompt and keys to use.
    #[serde(default)]
    pub chatbot: Option<String>,
}

/// One server-sent event of a reply, in order: `start`, any number of `delta`, then `done` or
/// `error`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    Start {
        conversation: String,
        provider: String,
        model: String,
        /// Which key serves the reply (members only; visitors are not told).
        source: Option<KeySource>,
    },
    /// The next piece of the reply's text.
    Delta { text: String },
    /// The reply as stored.
    Done { message: ChatMessageView },
    /// The reply failed; `message` is written for the reader (a generic apology for visitors,
    /// the classified reason for members).
    Error {
        message: String,
        class: Option<String>,
        /// The partial reply as stored, when the provider had started answering.
        stored: Option<ChatMessageView>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    User,
    Assistant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Ok,
    /// The reader stopped the reply; the text is what had arrived.
    Stopped,
    Error,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Stopped => "stopped",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "stopped" => Self::Stopped,
            "error" => Self::Error,
            _ => Self::Ok,
        }
    }
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessageView {
    pub id: String,
    pub role: ChatRole,
    pub content: String,
    pub status: MessageStatus,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Members only.
    pub source: Option<KeySource>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub first_token_ms: Option<u64>,
    pub latency_ms: Option<u64>,
}

/// A chatbot as its public chat page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatPage {
    pub workspace_name: String,
    pub workspace_slug: String,
    pub chatbot_name: String,
    pub chatbot_slug: String,
    pub greeting: String,
    /// The models a visitor may pick, labelled with the kind of key serving each.
    pub models: Vec<ModelOption>,
    /// The chatbot's default, as a `provider/model` id (`None`: no key serves it now).
    pub default_model: Option<String>,
    /// The visitor's latest conversation with this chatbot, if any.
    pub conversation: Option<String>,
    pub messages: Vec<ChatMessageView>,
}

/// The dashboard playground: the workspace's chatbots and the models available to the chosen
/// one (or to the workspace's own keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaygroundPage {
    pub workspace: WorkspaceSummary,
    pub chatbots: Vec<crate::dto::ChatbotView>,
    pub chatbot: Option<String>,
    pub models: Vec<ModelOption>,
    pub default_model: Option<String>,
}

/// `provider/model` (the model part may contain further slashes).
pub fn model_id(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

/// Splits a `provider/model` id; `None` when either part is empty.
pub fn split_model_id(id: &str) -> Option<(&str, &str)> {
    let (p, m) = id.trim().split_once('/')?;
    (!p.is_empty() && !m.trim().is_empty()).then_some((p, m.trim()))
}

/// The heading a model option is listed under.
pub fn group_label(source: KeySource) -> &'static str {
    if source.is_byok() {
        "Your keys"
    } else {
        "Platform"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_split_on_the_first_slash() {
        assert_eq!(split_model_id("openai/gpt-4o"), Some(("openai", "gpt-4o")));
        assert_eq!(
            split_model_id("openrouter/meta-llama/llama-3.1-8b"),
            Some(("openrouter", "meta-llama/llama-3.1-8b"))
        );
        assert_eq!(split_model_id("gpt-4o"), None);
        assert_eq!(split_model_id("openai/"), None);
        assert_eq!(split_model_id("/x"), None);
        assert_eq!(model_id("groq", "llama"), "groq/llama");
    }

    #[test]
    fn events_have_a_stable_wire_shape() {
        let e = ChatEvent::Delta { text: "Hi".into() };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"delta","text":"Hi"}"#
        );
        let back: ChatEvent = serde_json::from_str(r#"{"type":"delta","text":"Hi"}"#).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn groups() {
        assert_eq!(group_label(KeySource::Chatbot), "Your keys");
        assert_eq!(group_label(KeySource::Workspace), "Your keys");
        assert_eq!(group_label(KeySource::Platform), "Platform");
    }
}

#[cfg(test)]
mod capped_tests {
    use super::*;

    #[test]
    fn a_kept_reply_stops_at_the_cap_on_a_character_boundary() {
        let mut reply = "a".repeat(MAX_REPLY_BYTES - 1);
        assert!(
            !push_capped(&mut reply, "éé"),
            "2 bytes each, 1 byte of room"
        );
        assert_eq!(reply.len(), MAX_REPLY_BYTES - 1, "no half character");
        let mut reply = "a".repeat(MAX_REPLY_BYTES - 2);
        assert!(!push_capped(&mut reply, "éé"));
        assert!(reply.ends_with('é') && reply.len() == MAX_REPLY_BYTES);
        assert!(!push_capped(&mut reply, "x"));
        assert_eq!(reply.len(), MAX_REPLY_BYTES);
        let mut short = String::from("ab");
        assert!(push_capped(&mut short, "cd"));
        assert_eq!(short, "abcd");
    }
}
