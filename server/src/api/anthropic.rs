//! `POST /v1/messages` in Anthropic's wire format. The request is translated into Keyward's
//! internal (OpenAI) shape, so it can go to any provider — OpenAI-compatible ones directly,
//! Anthropic through the gateway's own translation — and the answer, whole or streamed, is
//! translated back into a Messages answer.
//!
//! Text and images translate; tool use, documents and extended thinking are refused with a
//! clear message rather than silently dropped.

use super::chat::prepare;
use super::sse::SseEncoder;
use super::{Failure, authenticate, json_body};
use crate::gateway::chat::{Chunk, Usage};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use keyward::tokens::TokenScope;
use keyward::wire::{Wire, stop_reason};
use serde_json::{Map, Value, json};
use std::time::Instant;

pub async fn messages(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let wire = Wire::Anthropic;
    let run = async {
        let auth = authenticate(&state, &headers, wire, TokenScope::Chat).await?;
        let request = json_body(&state, wire, body).await?;
        let (model, stream, internal) =
            to_internal(&request).map_err(|m| Failure::invalid(wire, m))?;
        let prepared = prepare(&state, wire, auth, internal, &model, stream).await?;
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let (id2, model2) = (id.clone(), model.clone());
        prepared
            .run(
                &state,
                wire,
                started,
                move || ToAnthropic::new(id, model),
                move |body, usage| from_completion(&body, usage, &id2, &model2),
            )
            .await
    };
    match run.await {
        Ok(res) => res,
        Err(f) => f.since(started).into_response(),
    }
}

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
}
