//! Chat adapters. Keyward's internal chat shape is OpenAI's chat-completions JSON: requests to
//! OpenAI-compatible providers pass through (unknown fields included, the model and streaming
//! options set by Keyward); requests to Anthropic are translated to Messages and the answers —
//! streamed or not — translated back ([`super::anthropic`], which holds both directions).
//!
//! Streams are parsed with a real SSE parser and forwarded event by event; nothing buffers a
//! whole response. Token usage is collected from the stream (OpenAI `include_usage`, Anthropic
//! `message_start`/`message_delta`). Errors are classified; a provider's body never leaves this
//! module.

use super::anthropic::{AnthropicStreamTranslator, from_anthropic, to_anthropic};
use super::{Gateway, auth_headers, describe, ssrf};
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use keyward::catalogue::WireFormat;
use keyward::keys::ErrorClass;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use std::pin::Pin;
use std::time::Duration;

/// Time allowed from sending a request to the first byte of the answer.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest silence allowed between two streamed events.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to read the start of an error answer (only to classify it).
pub const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// `max_tokens` sent to Anthropic when the request gives none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// Where and with which key a request goes.
pub struct Upstream<'a> {
    pub wire: WireFormat,
    pub base_url: &'a str,
    pub key: &'a SecretString,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A failed provider call, classified. `message` is for the key's owner and never quotes the
/// provider's body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub class: ErrorClass,
    pub status: Option<u16>,
    /// Seconds the provider asked us to wait (429 `Retry-After`).
    pub retry_after: Option<u64>,
    pub message: String,
    /// Whether any part of the answer had already been produced (then a retry is unsafe).
    pub mid_stream: bool,
    /// A transient failure before any output (502/503, connection refused): one retry is safe.
    pub retryable: bool,
}

impl UpstreamError {
    fn new(class: ErrorClass, status: Option<u16>, message: impl Into<String>) -> Self {
        UpstreamError {
            class,
            status,
            retry_after: None,
            message: message.into(),
            mid_stream: false,
            retryable: false,
        }
    }

    pub(super) fn cut(message: &str) -> Self {
        UpstreamError {
            mid_stream: true,
            ..Self::new(ErrorClass::ProviderUnavailable, None, message)
        }
    }
}

/// One chunk of a streamed answer, parsed once where it arrives: the `chat.completion.chunk`
/// document as the provider sent it (or as translated from Anthropic), with what every reader
/// needs from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    /// The chunk's JSON, passed through verbatim from OpenAI-compatible providers.
    pub raw: String,
    /// The text it adds to the reply (non-empty), if any.
    pub text: Option<String>,
    /// The token usage it reports (the usage-only chunk at the end, usually).
    pub usage: Option<Usage>,
    /// The finish reason it carries (`stop`, `length`, …).
    pub finish: Option<String>,
    /// It has no choices, only usage: the answer to `stream_options.include_usage`, forwarded to
    /// callers only when they asked for it.
    pub usage_only: bool,
}

impl Chunk {
    /// Parses an OpenAI `chat.completion.chunk` (the first choice's text and finish reason,
    /// the usage). `Err`: the provider put an error object in the stream.
    pub fn parse(raw: String) -> Result<Self, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct Probe {
            choices: Option<Vec<Choice>>,
            usage: Option<Value>,
            error: Option<Value>,
        }
        #[derive(serde::Deserialize)]
        struct Choice {
            delta: Option<Delta>,
            finish_reason: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Delta {
            content: Option<String>,
        }
        let Ok(p) = serde_json::from_str::<Probe>(&raw) else {
            // Not ours to judge: passed on as it came.
            return Ok(Chunk {
                raw,
                ..Chunk::default()
            });
        };
        if let Some(e) = p.error.and_then(|e| error_object(&e, true)) {
            return Err(e);
        }
        let usage = p.usage.as_ref().and_then(usage_from);
        let no_choices = p.choices.as_ref().is_none_or(Vec::is_empty);
        let first = p.choices.and_then(|c| c.into_iter().next());
        let (text, finish) = match first {
            Some(c) => (
                c.delta.and_then(|d| d.content).filter(|t| !t.is_empty()),
                c.finish_reason,
            ),
            None => (None, None),
        };
        Ok(Chunk {
            raw,
            text,
            usage_only: usage.is_some() && no_choices,
            usage,
            finish,
        })
    }
}

/// One item of a streamed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    Chunk(Chunk),
    /// The provider finished normally.
    Done,
}

/// How one wire format writes a stream of chunks out to its caller as server-sent events.
pub trait SseEncoder: Send + Unpin + 'static {
    /// The wire format (for the shape of a failure).
    const WIRE: keyward::wire::Wire;
    /// Writes what one chunk becomes (possibly nothing).
    fn chunk(&mut self, chunk: &Chunk, out: &mut Vec<u8>);
    /// Writes the end of a finished answer.
    fn end(&mut self, out: &mut Vec<u8>);
    /// Writes a failure event whose data is `body` (the wire format's error document).
    fn fail(&mut self, body: &str, out: &mut Vec<u8>);
}

pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, UpstreamError>> + Send>>;

pub enum ChatReply {
    /// A whole `chat.completion` document and its usage (`None`: the provider reported none).
    Complete {
        body: Value,
        usage: Option<Usage>,
    },
    Stream(ChatStream),
}

impl std::fmt::Debug for ChatReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatReply::Complete { usage, .. } => write!(f, "Complete({usage:?})"),
            ChatReply::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A token count the provider reported, clamped (a hostile upstream cannot break the sums).
pub(super) fn tokens(v: Option<&Value>) -> u64 {
    keyward::usage::reported_tokens(v.and_then(Value::as_u64).unwrap_or(0))
}

fn usage_of_openai(v: &Value) -> Option<Usage> {
    v.get("usage").and_then(usage_from)
}

/// OpenAI's `usage` object.
fn usage_from(u: &Value) -> Option<Usage> {
    u.is_object().then_some(())?;
    Some(Usage {
        input_tokens: tokens(u.get("prompt_tokens")),
        output_tokens: tokens(u.get("completion_tokens")),
    })
}

/// An error object a provider put inside a successful (200) answer or stream event: OpenAI
/// style `{"error": {…}}` (OpenRouter does this mid-stream) or Anthropic's `{"type": "error"}`.
/// Becomes Keyward's own classified error; the provider's text is never passed on.
pub(super) fn error_inside(v: &Value, mid_stream: bool) -> Option<UpstreamError> {
    v.get("error").and_then(|e| error_object(e, mid_stream))
}

/// Classifies a provider's error object by its `type` and `code`.
fn error_object(err: &Value, mid_stream: bool) -> Option<UpstreamError> {
    if !(err.is_object() || err.is_string()) {
        return None;
    }
    let field = |name: &str| {
        err.get(name)
            .map(|f| match f {
                Value::String(s) => s.to_ascii_lowercase(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    let (kind, code) = (field("type"), field("code"));
    let status = code.parse::<u16>().ok().filter(|s| (400..600).contains(s));
    let has = |w: &str| kind.contains(w) || code.contains(w);
    let class = if has("quota") || has("billing") || has("credit") {
        ErrorClass::NoQuota
    } else if has("rate_limit") || status == Some(429) {
        ErrorClass::RateLimited
    } else if has("auth")
        || has("permission")
        || has("api_key")
        || matches!(status, Some(401 | 403))
    {
        ErrorClass::InvalidKey
    } else if has("invalid_request") || matches!(status, Some(400 | 404 | 422)) {
        ErrorClass::Rejected
    } else {
        ErrorClass::ProviderUnavailable
    };
    let when = if mid_stream {
        " (during the answer)"
    } else {
        ""
    };
    Some(UpstreamError {
        mid_stream,
        ..UpstreamError::new(class, None, format!("{}{when}", describe(class, None)))
    })
}

/// Builds the body sent to an OpenAI-compatible provider: the caller's request with the resolved
/// model, and usage reporting switched on for streams.
pub fn openai_body(request: &Map<String, Value>, model: &str, stream: bool) -> Map<String, Value> {
    let mut body = request.clone();
    body.insert("model".into(), Value::String(model.into()));
    if stream {
        body.insert("stream".into(), Value::Bool(true));
        let opts = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), Value::Bool(true));
        } else {
            *opts = json!({"include_usage": true});
        }
    } else {
        body.remove("stream");
        body.remove("stream_options");
    }
    body
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Classifies a non-2xx answer. Reads at most 4 KiB of the body, only to tell a quota problem
/// from a rate limit.
async fn refused(res: reqwest::Response) -> UpstreamError {
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = super::read_prefix(res, 4096, ERROR_BODY_TIMEOUT)
        .await
        .to_ascii_lowercase();
    let quota = ["quota", "billing", "credit balance", "insufficient"]
        .iter()
        .any(|w| body.contains(w));
    let class = ErrorClass::from_status(status, quota);
    UpstreamError {
        retry_after,
        retryable: matches!(status, 502 | 503),
        ..UpstreamError::new(class, Some(status), describe(class, Some(status)))
    }
}

/// The owner-facing answer when no connection could be made. The same whether the name did
/// not resolve, nothing listened, or the name resolved to a private address the SSRF guard
/// refused: a key test must not tell a tenant how internal names resolve. The precise reason
/// goes to the operator's log.
pub const UNREACHABLE: &str =
    "could not connect to the provider (the address is unreachable or not allowed)";

fn transport(e: &reqwest::Error) -> UpstreamError {
    if super::is_refused_address(e) {
        tracing::warn!(
            "a provider address resolved to a private or local address; the connection was refused"
        );
        return UpstreamError::new(ErrorClass::ProviderUnavailable, None, UNREACHABLE);
    }
    let why = if e.is_timeout() {
        "the provider did not answer in time"
    } else if e.is_connect() {
        UNREACHABLE
    } else {
        "the connection to the provider failed"
    };
    UpstreamError {
        retryable: e.is_connect(),
        ..UpstreamError::new(ErrorClass::ProviderUnavailable, None, why)
    }
}

/// The error for a stream that broke: over a size limit, or the connection failed.
fn stream_broke(
    e: &eventsource_stream::EventStreamError<super::BoundedError<reqwest::Error>>,
    limits: &super::Limits,
) -> UpstreamError {
    use super::BoundedError;
    match e {
        eventsource_stream::EventStreamError::Transport(BoundedError::EventTooLarge) => {
            UpstreamError::cut(&format!(
                "the provider sent a stream event larger than {}, so the stream was stopped",
                size(limits.max_event_bytes as u64)
            ))
        }
        eventsource_stream::EventStreamError::Transport(BoundedError::StreamTooLarge) => {
            UpstreamError::cut(&format!(
                "the provider's streamed answer passed {}, so the stream was stopped",
                size(limits.max_stream_bytes)
            ))
        }
        _ => UpstreamError::cut("the stream from the provider broke off mid-answer"),
    }
}

/// A byte count for people: `4 MiB`, `512 KiB`, `900 bytes`.
pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

impl Gateway {
    /// Reads a whole non-streamed answer within the size limit and `deadline`, or says why not
    /// (`what`: "answer", "model list").
    async fn read_answer(
        &self,
        res: reqwest::Response,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> Result<Vec<u8>, UpstreamError> {
        use super::ReadError;
        super::read_body(res, self.limits.max_body_bytes, deadline)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => UpstreamError::new(
                    ErrorClass::ProviderUnavailable,
                    None,
                    format!(
                        "the provider's {what} is larger than {}, so it was not read",
                        size(self.limits.max_body_bytes as u64)
                    ),
                ),
                ReadError::TooSlow => UpstreamError::new(
                    ErrorClass::ProviderUnavailable,
                    None,
                    format!("the provider did not finish sending its {what} in time"),
                ),
                ReadError::Transport(e) => transport(&e),
            })
    }

    /// The checked base URL and the auth headers for a call: the only way a request gets them.
    fn destination(
        &self,
        up: &Upstream<'_>,
    ) -> Result<(String, reqwest::header::HeaderMap), UpstreamError> {
        let base = ssrf::check_base_url(up.base_url, &self.allow).map_err(|e| {
            UpstreamError::new(
                ErrorClass::Rejected,
                None,
                format!("the provider address is not allowed: {e}"),
            )
        })?;
        let headers = auth_headers(up.wire, up.key).ok_or_else(|| {
            UpstreamError::new(
                ErrorClass::InvalidKey,
                None,
                "the key contains characters that cannot be sent",
            )
        })?;
        Ok((base, headers))
    }

    /// The model ids the provider offers to this key (its `/models` list).
    pub async fn list_models(&self, up: &Upstream<'_>) -> Result<Vec<String>, UpstreamError> {
        let (base, headers) = self.destination(up)?;
        let url = match up.wire {
            WireFormat::OpenAi => format!("{base}/models"),
            WireFormat::Anthropic => format!("{base}/v1/models?limit=1000"),
        };
        let send = self
            .client_for(&base)
            .get(url)
            .headers(headers)
            .timeout(super::TEST_TIMEOUT)
            .send();
        let deadline = tokio::time::Instant::now() + super::TEST_TIMEOUT;
        let res = send.await.map_err(|e| transport(&e))?;
        if !res.status().is_success() {
            return Err(refused(res).await);
        }
        let body = self.read_answer(res, deadline, "model list").await?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| {
            UpstreamError::new(
                ErrorClass::ProviderUnavailable,
                None,
                "the provider sent an unreadable model list",
            )
        })?;
        let mut ids: Vec<String> = v
            .get("data")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Sends one chat request (OpenAI-shaped) to the upstream with the given key and model.
    /// Nothing has reached the caller when this returns an error, so the caller may retry (with
    /// the fallback key, say); errors inside a returned stream come after output started.
    #[tracing::instrument(skip_all, fields(wire = ?up.wire, model = ?model, stream))]
    pub async fn chat(
        &self,
        up: &Upstream<'_>,
        request: &Map<String, Value>,
        model: &str,
        stream: bool,
    ) -> Result<ChatReply, UpstreamError> {
        let (base, headers) = self.destination(up)?;
        let (url, body) = match up.wire {
            WireFormat::OpenAi => (
                format!("{base}/chat/completions"),
                Value::Object(openai_body(request, model, stream)),
            ),
            WireFormat::Anthropic => (
                format!("{base}/v1/messages"),
                to_anthropic(request, model, stream)
                    .map_err(|m| UpstreamError::new(ErrorClass::Rejected, None, m))?,
            ),
        };
        let client = self.client_for(&base);
        let send = client.post(url).headers(headers).json(&body).send();
        let deadline = tokio::time::Instant::now() + self.limits.total;
        let res = match tokio::time::timeout(self.limits.first_byte, send).await {
            Err(_) => {
                return Err(UpstreamError::new(
                    ErrorClass::ProviderUnavailable,
                    None,
                    "the provider did not answer in time",
                ));
            }
            Ok(Err(e)) => return Err(transport(&e)),
            Ok(Ok(res)) => res,
        };
        if !res.status().is_success() {
            return Err(refused(res).await);
        }
        if !stream {
            let body = self.read_answer(res, deadline, "answer").await?;
            let answer: Value = serde_json::from_slice(&body).map_err(|_| {
                UpstreamError::new(
                    ErrorClass::ProviderUnavailable,
                    None,
                    "the provider sent an unreadable answer",
                )
            })?;
            // `{"error": {…}}` (OpenAI style) or `{"type": "error", "error": {…}}` (Anthropic).
            if let Some(e) = error_inside(&answer, false) {
                return Err(e);
            }
            return Ok(match up.wire {
                WireFormat::OpenAi => {
                    let usage = usage_of_openai(&answer);
                    ChatReply::Complete {
                        body: answer,
                        usage,
                    }
                }
                WireFormat::Anthropic => {
                    // Anthropic always reports usage (zeros when the answer lacks it).
                    let (body, usage) = from_anthropic(&answer, now_secs());
                    ChatReply::Complete {
                        body,
                        usage: Some(usage),
                    }
                }
            });
        }
        let limits = self.limits;
        let events = super::bounded_events(
            res.bytes_stream(),
            limits.max_event_bytes,
            limits.max_stream_bytes,
        )
        .eventsource();
        let wire = up.wire;
        let idle = limits.idle;
        let mut translator = AnthropicStreamTranslator::new(now_secs());
        let stream = futures_util::stream::unfold(
            (Box::pin(events), false),
            move |(mut events, done)| async move {
                if done {
                    return None;
                }
                match tokio::time::timeout(idle, events.next()).await {
                    Err(_) => Some((
                        Err(UpstreamError::cut(
                            "the provider stopped sending mid-answer",
                        )),
                        (events, true),
                    )),
                    Ok(None) => Some((
                        Err(UpstreamError::cut(
                            "the provider closed the stream mid-answer",
                        )),
                        (events, true),
                    )),
                    Ok(Some(Err(e))) => Some((Err(stream_broke(&e, &limits)), (events, true))),
                    Ok(Some(Ok(ev))) => Some((Ok(ev), (events, false))),
                }
            },
        )
        .flat_map(move |item| {
            let out: Vec<Result<StreamEvent, UpstreamError>> = match item {
                Err(e) => vec![Err(e)],
                Ok(ev) => match wire {
                    WireFormat::OpenAi => {
                        if ev.data.trim() == "[DONE]" {
                            vec![Ok(StreamEvent::Done)]
                        } else {
                            vec![Chunk::parse(ev.data).map(StreamEvent::Chunk)]
                        }
                    }
                    WireFormat::Anthropic => match translator.event(&ev.event, &ev.data) {
                        Ok(items) => items.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e)],
                    },
                },
            };
            futures_util::stream::iter(out)
        })
        // Stop after the first error or the end: nothing follows either.
        .scan(false, |stop, item| {
            if *stop {
                return std::future::ready(None);
            }
            if matches!(item, Err(_) | Ok(StreamEvent::Done)) {
                *stop = true;
            }
            std::future::ready(Some(item))
        });
        Ok(ChatReply::Stream(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Chunk {
        Chunk::parse(raw.into()).unwrap()
    }

    #[test]
    fn a_chunk_is_read_once_for_text_usage_and_finish() {
        let c = parsed(r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#);
        assert_eq!(
            (c.text.as_deref(), c.usage, c.usage_only),
            (Some("Hel"), None, false)
        );
        assert_eq!(
            parsed(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#).text,
            None
        );
        assert_eq!(
            parsed(r#"{"choices":[{"delta":{"content":""}}]}"#).text,
            None
        );
        let end = parsed(r#"{"choices":[{"delta":{},"finish_reason":"length"}]}"#);
        assert_eq!(end.finish.as_deref(), Some("length"));
        let usage = parsed(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#);
        assert!(usage.usage_only);
        assert_eq!(
            usage.usage,
            Some(Usage {
                input_tokens: 3,
                output_tokens: 2
            })
        );
        // Some providers put usage on the last content chunk: it is not usage-only.
        let both = parsed(r#"{"choices":[{"delta":{"content":"!"}}],"usage":{"prompt_tokens":1}}"#);
        assert!(!both.usage_only && both.usage.is_some());
        assert!(
            parsed(r#"{"choices":[{"delta":{}}],"usage":null}"#)
                .usage
                .is_none()
        );
        // Unreadable: forwarded as it came, read as nothing.
        let odd = parsed("not json");
        assert_eq!((odd.raw.as_str(), odd.text), ("not json", None));
        // An error object inside the stream is a classified failure.
        assert!(Chunk::parse(r#"{"error":{"message":"overloaded","code":429}}"#.into()).is_err());
    }
}
