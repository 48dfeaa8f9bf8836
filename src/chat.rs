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

/// The most sites one chatbot may list as allowed to embed its chat page.
pub const MAX_ALLOWED_SITES: usize = 20;

/// Checks the sites a chatbot's chat page may be embedded in: origins such as
/// `https://www.example.com`, `https://*.example.com` or `http://localhost:8080` (no path, query
/// or credentials). Each becomes a `frame-ancestors` source, so anything that could widen or
/// break that header (spaces, `;`, quotes, a bare `*`) is refused. Returns them normalised
/// (lower case, no trailing slash, no duplicates).
pub fn parse_allowed_sites(sites: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for raw in sites.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let site = raw.trim_end_matches('/').to_ascii_lowercase();
        let bad = || format!("{raw:?} is not a site: write an origin like https://www.example.com");
        let (scheme, host) = site.split_once("://").ok_or_else(bad)?;
        if scheme != "https" && scheme != "http" {
            return Err(bad());
        }
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (n, Some(p)),
            _ => (host, None),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 253
            && name
                .strip_prefix("*.")
                .unwrap_or(name)
                .split('.')
                .all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
        if !name_ok || port.is_some_and(|p| p.len() > 5) {
            return Err(bad());
        }
        if !out.contains(&site) {
            out.push(site);
        }
    }
    if out.len() > MAX_ALLOWED_SITES {
        return Err(format!("at most {MAX_ALLOWED_SITES} sites"));
    }
    Ok(out)
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
    fn allowed_sites_are_origins_and_nothing_that_could_break_the_header() {
        let ok =
            |v: &[&str]| parse_allowed_sites(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            ok(&[
                "https://WWW.Example.com/",
                " https://*.example.org ",
                "http://localhost:8080",
                "https://www.example.com"
            ])
            .unwrap(),
            [
                "https://www.example.com",
                "https://*.example.org",
                "http://localhost:8080"
            ]
        );
        for bad in [
            "*",
            "https://*",
            "example.com",
            "javascript:alert(1)",
            "https://a.example.com/path",
            "https://a.example.com?x",
            "https://a.example.com; script-src *",
            "https://a b.example.com",
            "https://user@example.com",
            "https://'self'",
            "ftp://example.com",
            "https://example.com:999999",
        ] {
            assert!(ok(&[bad]).is_err(), "{bad}");
        }
        assert!(ok(&["https://a.example.com"]).is_ok());
        let many: Vec<String> = (0..21)
            .map(|i| format!("https://s{i}.example.com"))
            .collect();
        assert!(parse_allowed_sites(&many).is_err());
    }

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
