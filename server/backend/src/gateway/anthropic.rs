//! Anthropic's Messages format, both directions, in one place.
//!
//! * **To Anthropic as a provider** (the gateway's side): an OpenAI-shaped chat request becomes a
//!   Messages request ([`to_anthropic`]); a Messages answer becomes a `chat.completion`
//!   ([`from_anthropic`]); a stream of Messages events becomes `chat.completion.chunk`s
//!   ([`AnthropicStreamTranslator`]).
//! * **From callers speaking Anthropic** (`POST /v1/messages`): a Messages request becomes the
//!   internal (OpenAI) shape ([`to_internal`]), so it can go to any provider; the answer comes back
//!   as a Messages answer ([`from_completion`]) or as Messages stream events ([`ToAnthropic`]).
//!
//! Text and images translate; tool use, documents and extended thinking are refused with a clear
//! message rather than silently dropped.

use super::chat::{
    Chunk, DEFAULT_MAX_TOKENS, SseEncoder, StreamEvent, UpstreamError, Usage, error_inside, tokens,
};
use keyward::wire::{Wire, stop_reason};
use serde_json::{Map, Value, json};

// --- to Anthropic as a provider --------------------------------------------------------------

fn text_of(content: &Value) -> Result<String, String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        out.push_str(p.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    other => {
                        return Err(format!(
                            "content parts of type {} cannot be sent to Anthropic",
                            other.unwrap_or("(none)")
                        ));
                    }
                }
            }
            Ok(out)
        }
        _ => Err("a message's content must be text".into()),
    }
}

/// Translates an OpenAI-shaped chat request into an Anthropic Messages request: system and
/// developer messages become `system`, `stop` becomes `stop_sequences`, `max_tokens` defaults to
/// [`DEFAULT_MAX_TOKENS`], temperature is clamped to Anthropic's 0–1, `user` becomes
/// `metadata.user_id`. Anything Anthropic cannot take (tools, images) is refused with a reason.
pub fn to_anthropic(
    request: &Map<String, Value>,
    model: &str,
    stream: bool,
) -> Result<Value, String> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages must be a list")?;
    let mut system: Vec<String> = Vec::new();
    let mut out: Vec<Value> = Vec::with_capacity(messages.len());
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let text = text_of(m.get("content").unwrap_or(&Value::Null))?;
        match role {
            "system" | "developer" => system.push(text),
            "user" | "assistant" => out.push(json!({"role": role, "content": text})),
            other => {
                return Err(format!(
                    "messages with role {other:?} cannot be sent to Anthropic"
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("at least one user message is required".into());
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(out));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    let max = request
        .get("max_completion_tokens")
        .or_else(|| request.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), json!(max));
    if let Some(t) = request.get("temperature").and_then(Value::as_f64) {
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = request.get("top_p").and_then(Value::as_f64) {
        body.insert("top_p".into(), json!(p));
    }
    match request.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(u) = request.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": u}));
    }
    if request.get("tools").is_some() || request.get("functions").is_some() {
        return Err("tools cannot be sent to Anthropic through the OpenAI format yet".into());
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        _ => "stop",
    }
}

/// Translates an Anthropic Messages answer into an OpenAI `chat.completion`.
pub fn from_anthropic(answer: &Value, created: u64) -> (Value, Usage) {
    let text: String = answer
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let usage = Usage {
        input_tokens: tokens(answer.pointer("/usage/input_tokens")),
        output_tokens: tokens(answer.pointer("/usage/output_tokens")),
    };
    let body = json!({
        "id": answer.get("id").cloned().unwrap_or(json!("msg")),
        "object": "chat.completion",
        "created": created,
        "model": answer.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason(answer.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens.saturating_add(usage.output_tokens),
        },
    });
    (body, usage)
}

/// Translates a stream of Anthropic events into OpenAI chunks, one event at a time.
#[derive(Debug, Default)]
pub struct AnthropicStreamTranslator {
    id: String,
    model: String,
    created: u64,
    usage: Usage,
    /// `{"id":…,"object":"chat.completion.chunk",…,"choices":[{"index":0,"delta":` — the part of
    /// every chunk that does not change, serialised once (the hot path is one token per event).
    prefix: String,
}

impl AnthropicStreamTranslator {
    pub fn new(created: u64) -> Self {
        AnthropicStreamTranslator {
            created,
            ..Default::default()
        }
    }

    fn set_prefix(&mut self) {
        self.prefix = format!(
            "{{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{},\"choices\":[{{\"index\":0,\"delta\":",
            Value::String(self.id.clone()),
            self.created,
            Value::String(self.model.clone()),
        );
    }

    fn chunk(&mut self, delta: Value, finish: Option<&'static str>) -> StreamEvent {
        if self.prefix.is_empty() {
            self.set_prefix();
        }
        let text = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        StreamEvent::Chunk(Chunk {
            raw: format!(
                "{}{delta},\"finish_reason\":{}}}]}}",
                self.prefix,
                json!(finish)
            ),
            text,
            finish: finish.map(str::to_string),
            ..Chunk::default()
        })
    }

    /// The hot path: a text delta, parsed without building a JSON tree.
    fn text_delta(&mut self, data: &str) -> Option<StreamEvent> {
        #[derive(serde::Deserialize)]
        struct Ev<'a> {
            #[serde(borrow)]
            delta: Option<Delta<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Delta<'a> {
            #[serde(borrow)]
            text: Option<std::borrow::Cow<'a, str>>,
        }
        let ev: Ev<'_> = serde_json::from_str(data).ok()?;
        let text = ev.delta?.text?;
        if self.prefix.is_empty() {
            self.set_prefix();
        }
        let escaped = serde_json::to_string(&text).ok()?;
        let mut out = String::with_capacity(self.prefix.len() + escaped.len() + 40);
        out.push_str(&self.prefix);
        out.push_str("{\"content\":");
        out.push_str(&escaped);
        out.push_str("},\"finish_reason\":null}]}");
        Some(StreamEvent::Chunk(Chunk {
            raw: out,
            text: Some(text.into_owned()).filter(|t| !t.is_empty()),
            ..Chunk::default()
        }))
    }

    /// Handles one event (`event:` name and `data:` JSON); returns what to forward.
    pub fn event(&mut self, name: &str, data: &str) -> Result<Vec<StreamEvent>, UpstreamError> {
        if name == "content_block_delta"
            && let Some(chunk) = self.text_delta(data)
        {
            return Ok(vec![chunk]);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|_| UpstreamError::cut("the provider sent an unreadable stream event"))?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or(name);
        Ok(match kind {
            "message_start" => {
                self.id = v
                    .pointer("/message/id")
                    .and_then(Value::as_str)
                    .unwrap_or("msg")
                    .into();
                self.model = v
                    .pointer("/message/model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into();
                self.usage.input_tokens = tokens(v.pointer("/message/usage/input_tokens"));
                self.set_prefix();
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_delta" => match v.pointer("/delta/text").and_then(Value::as_str) {
                Some(text) => vec![self.chunk(json!({"content": text}), None)],
                None => vec![],
            },
            "message_delta" => {
                if let Some(out) = v.pointer("/usage/output_tokens") {
                    self.usage.output_tokens = tokens(Some(out));
                }
                let finish = finish_reason(v.pointer("/delta/stop_reason").and_then(Value::as_str));
                vec![self.chunk(json!({}), Some(finish))]
            }
            "message_stop" => {
                // The usage-only chunk OpenAI sends for `include_usage`; forwarded to callers
                // only when they asked for it.
                let u = self.usage;
                let raw = json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [],
                    "usage": {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                              "total_tokens": u.input_tokens.saturating_add(u.output_tokens)},
                })
                .to_string();
                vec![
                    StreamEvent::Chunk(Chunk {
                        raw,
                        usage: Some(u),
                        usage_only: true,
                        ..Chunk::default()
                    }),
                    StreamEvent::Done,
                ]
            }
            "error" => {
                return Err(error_inside(&v, true).unwrap_or_else(|| {
                    UpstreamError::cut("the provider reported an error during the answer")
                }));
            }
            _ => vec![],
        })
    }
}

// --- from callers speaking Anthropic ---------------------------------------------------------

fn unsupported(kind: &str) -> String {
    format!("content blocks of type `{kind}` are not supported by Keyward's /v1/messages yet")
}

/// The OpenAI content of one Anthropic message: a string when it is text only, else parts.
fn content(v: &Value) -> Result<Value, String> {
    let blocks = match v {
        Value::String(s) => return Ok(Value::String(s.clone())),
        Value::Array(b) => b,
        _ => return Err("a message's `content` must be a string or a list of blocks".into()),
    };
    let mut parts = Vec::with_capacity(blocks.len());
    let mut text_only = true;
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = b
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or("a text block needs `text`")?;
                parts.push(json!({"type": "text", "text": t}));
            }
            Some("image") => {
                text_only = false;
                let src = b.get("source").ok_or("an image block needs a `source`")?;
                let url = match src.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        src.get("media_type")
                            .and_then(Value::as_str)
                            .unwrap_or("image/png"),
                        src.get("data").and_then(Value::as_str).unwrap_or("")
                    ),
                    Some("url") => src
                        .get("url")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    _ => return Err("an image `source` must be base64 or url".into()),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some(other) => return Err(unsupported(other)),
            None => return Err("every content block needs a `type`".into()),
        }
    }
    if text_only {
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        return Ok(Value::String(text.join("\n")));
    }
    Ok(Value::Array(parts))
}

/// Translates a Messages request: the model id, whether to stream, and the internal request.
pub fn to_internal(req: &Map<String, Value>) -> Result<(String, bool, Map<String, Value>), String> {
    let model = match req.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
        _ => {
            return Err(
                "model: Field required (a model id such as anthropic/claude-sonnet-4-5)".into(),
            );
        }
    };
    let max_tokens = req
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .ok_or("max_tokens: Field required (a positive integer)")?;
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: Field required (a non-empty list)")?;
    for unsupported_field in ["tools", "tool_choice", "thinking"] {
        if req.get(unsupported_field).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "`{unsupported_field}` is not supported by Keyward's /v1/messages yet"
            ));
        }
    }
    let mut messages = Vec::with_capacity(msgs.len() + 1);
    match req.get("system") {
        None | Some(Value::Null) => {}
        Some(s) => {
            let text = match content(s)? {
                Value::String(t) => t,
                _ => return Err("`system` must be text".into()),
            };
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "user" | "assistant") {
            return Err(format!(
                "messages: role must be user or assistant, not {role:?}"
            ));
        }
        messages.push(
            json!({"role": role, "content": content(m.get("content").unwrap_or(&Value::Null))?}),
        );
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    for k in ["temperature", "top_p"] {
        if let Some(v) = req.get(k).filter(|v| v.is_number()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(stops) = req
        .get("stop_sequences")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    {
        out.insert("stop".into(), Value::Array(stops.clone()));
    }
    if let Some(u) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(u));
    }
    Ok((model, stream, out))
}

fn usage_json(u: Usage) -> Value {
    json!({"input_tokens": u.input_tokens, "output_tokens": u.output_tokens})
}

/// Translates a whole OpenAI `chat.completion` (and the usage the gateway read from it) into a
/// Messages answer.
pub fn from_completion(body: &Value, usage: Option<Usage>, id: &str, model: &str) -> Value {
    let text = body
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let finish = body
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str);
    let usage = usage.unwrap_or_default();
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": usage_json(usage),
    })
}

/// Writes OpenAI chunks out as Anthropic's stream events: `message_start`,
/// `content_block_start`, a `content_block_delta` per piece of text, then (at the end, once the
/// usage is known) `content_block_stop`, `message_delta` and `message_stop`.
#[derive(Debug)]
pub struct ToAnthropic {
    id: String,
    model: String,
    started: bool,
    finish: Option<String>,
    usage: Option<Usage>,
}

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

impl ToAnthropic {
    pub fn new(id: String, model: String) -> Self {
        ToAnthropic {
            id,
            model,
            started: false,
            finish: None,
            usage: None,
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": usage_json(self.usage.unwrap_or_default()),
            }}),
        );
        event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
        );
    }
}

impl SseEncoder for ToAnthropic {
    const WIRE: Wire = Wire::Anthropic;

    fn chunk(&mut self, chunk: &Chunk, out: &mut Vec<u8>) {
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        if chunk.usage_only {
            return;
        }
        self.start(out);
        if let Some(text) = &chunk.text {
            event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": text}}),
            );
        }
        if let Some(f) = &chunk.finish {
            self.finish = Some(f.clone());
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let u = self.usage.unwrap_or_default();
        event(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        );
        event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
                    "usage": usage_json(u)}),
        );
        event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn fail(&mut self, body: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("event: error\ndata: {body}\n\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Chunk {
        Chunk::parse(raw.into()).unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_messages_request_becomes_an_openai_one() {
        let (model, stream, req) = to_internal(&obj(json!({
            "model": "openai/mock-small", "max_tokens": 50, "stream": true,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}],
            "stop_sequences": ["END"], "temperature": 0.2, "top_k": 5,
            "metadata": {"user_id": "u1"},
        })))
        .unwrap();
        assert_eq!((model.as_str(), stream), ("openai/mock-small", true));
        assert_eq!(
            Value::Object(req),
            json!({
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi\nthere"}],
                "max_tokens": 50, "temperature": 0.2, "stop": ["END"], "user": "u1",
            })
        );
    }

    #[test]
    fn what_cannot_translate_is_refused_with_a_reason() {
        let base =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        let mut no_max = base.clone();
        no_max.as_object_mut().unwrap().remove("max_tokens");
        assert!(
            to_internal(&obj(no_max))
                .unwrap_err()
                .contains("max_tokens")
        );
        let mut tools = base.clone();
        tools["tools"] = json!([{"name": "t"}]);
        assert!(to_internal(&obj(tools)).unwrap_err().contains("tools"));
        let mut tool_use = base.clone();
        tool_use["messages"] =
            json!([{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]);
        assert!(
            to_internal(&obj(tool_use))
                .unwrap_err()
                .contains("tool_result")
        );
        let mut image = base;
        image["messages"] = json!([{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA"}}]}]);
        let (_, _, req) = to_internal(&obj(image)).unwrap();
        assert_eq!(
            req["messages"][0]["content"][0]["image_url"]["url"],
            "data:image/jpeg;base64,AAA"
        );
    }

    #[test]
    fn a_completion_becomes_a_message() {
        let m = from_completion(
            &json!({"choices": [{"message": {"content": "hello"}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 1,
            }),
            "msg_1",
            "openai/x",
        );
        assert_eq!(m["content"][0]["text"], "hello");
        assert_eq!(m["stop_reason"], "max_tokens");
        assert_eq!(m["usage"], json!({"input_tokens": 3, "output_tokens": 1}));
    }

    #[test]
    fn chunks_become_anthropic_events() {
        let mut t = ToAnthropic::new("msg_1".into(), "openai/x".into());
        let mut out = Vec::new();
        for raw in [
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#,
        ] {
            t.chunk(&Chunk::parse(raw.into()).unwrap(), &mut out);
        }
        t.end(&mut out);
        let text = String::from_utf8(out).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains(r#""text":"Hi""#));
        assert!(text.contains(r#""stop_reason":"end_turn""#));
        assert!(text.contains(r#""output_tokens":1"#));
    }

    #[test]
    fn translated_anthropic_chunks_carry_their_text_and_usage() {
        let mut t = AnthropicStreamTranslator::new(7);
        let start = r#"{"type":"message_start","message":{"id":"m1","model":"claude","usage":{"input_tokens":4}}}"#;
        t.event("message_start", start).unwrap();
        let delta = r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}"#;
        let out = t.event("content_block_delta", delta).unwrap();
        let [StreamEvent::Chunk(c)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(c.text.as_deref(), Some("Hi"));
        assert_eq!(
            parsed(&c.raw).text.as_deref(),
            Some("Hi"),
            "raw and parsed agree"
        );
        let stop = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}"#;
        t.event("message_delta", stop).unwrap();
        let out = t
            .event("message_stop", r#"{"type":"message_stop"}"#)
            .unwrap();
        let [StreamEvent::Chunk(u), StreamEvent::Done] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(u.usage_only);
        assert_eq!(
            u.usage,
            Some(Usage {
                input_tokens: 4,
                output_tokens: 1
            })
        );
        assert_eq!(parsed(&u.raw).usage, u.usage);
    }
}
