//! `POST /v1/chat/completions` and `GET /v1/models` in OpenAI's wire format.

use super::chat::prepare;
use super::sse::SseEncoder;
use super::{Failure, authenticate, json_body, json_response, stamp, wire_of};
use crate::gateway::chat::Chunk;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward::tokens::TokenScope;
use keyward::wire::{Wire, model_id};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    match completions(&state, &headers, body, started).await {
        Ok(res) => res,
        Err(f) => f.since(started).into_response(),
    }
}

/// Checks the basic shape OpenAI requires, so a malformed request is refused here with a
/// clear message rather than by the provider.
fn check_request(request: &Map<String, Value>, wire: Wire) -> Result<(String, bool), Failure> {
    let model = match request.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
        _ => {
            return Err(Failure::invalid(
                wire,
                "`model` is required: a model id such as openai/gpt-4o-mini",
            ));
        }
    };
    match request.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => {
            if a.iter()
                .any(|m| !m.is_object() || m.get("role").and_then(Value::as_str).is_none())
            {
                return Err(Failure::invalid(wire, "every message needs a `role`"));
            }
        }
        _ => {
            return Err(Failure::invalid(
                wire,
                "`messages` must be a non-empty list",
            ));
        }
    }
    let stream = match request.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Failure::invalid(wire, "`stream` must be true or false")),
    };
    Ok((model, stream))
}

/// OpenAI's stream: chunks passed through verbatim, then `[DONE]`.
pub(super) struct OpenAiSse {
    /// The caller asked for `stream_options.include_usage` (otherwise the usage-only chunk
    /// Keyward asked the provider for is not forwarded).
    pub usage_chunk: bool,
}

impl SseEncoder for OpenAiSse {
    const WIRE: Wire = Wire::OpenAi;

    fn chunk(&mut self, chunk: &Chunk, out: &mut Vec<u8>) {
        if chunk.usage_only && !self.usage_chunk {
            return;
        }
        out.reserve(chunk.raw.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(chunk.raw.as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn fail(&mut self, body: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("data: {body}\n\n").as_bytes());
    }
}

async fn completions(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Response, Failure> {
    let wire = Wire::OpenAi;
    let auth = authenticate(state, headers, wire, TokenScope::Chat).await?;
    let request = json_body(state, wire, body).await?;
    let (model, stream) = check_request(&request, wire)?;
    let usage_chunk = request
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let prepared = prepare(state, wire, auth, request, &model, stream).await?;
    prepared
        .run(
            state,
            wire,
            started,
            || OpenAiSse { usage_chunk },
            |body, _| body,
        )
        .await
}

pub async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let wire = wire_of(&headers);
    let listed = async {
        let auth = authenticate(&state, &headers, wire, TokenScope::Models).await?;
        crate::services::models::available(
            &state.db,
            &state.vault,
            &state.gateway,
            &state.keys,
            &state.models,
            auth.workspace,
            auth.chatbot,
        )
        .await
        .map_err(|e| Failure::of_service(wire, &e))
    }
    .await;
    let options = match listed {
        Ok(o) => o,
        Err(f) => return f.since(started).into_response(),
    };
    let body = match wire {
        Wire::OpenAi => json!({
            "object": "list",
            "data": options.iter().map(|m| json!({
                "id": model_id(&m.provider, &m.model),
                "object": "model",
                "created": 0,
                "owned_by": m.provider,
                "key_source": m.source.as_str(),
                "provider_default": m.default,
            })).collect::<Vec<_>>(),
        }),
        Wire::Anthropic => {
            let data: Vec<Value> = options
                .iter()
                .map(|m| {
                    let id = model_id(&m.provider, &m.model);
                    json!({
                        "id": id,
                        "type": "model",
                        "display_name": id,
                        "created_at": "1970-01-01T00:00:00Z",
                    })
                })
                .collect();
            json!({
                "first_id": data.first().map(|d| d["id"].clone()),
                "last_id": data.last().map(|d| d["id"].clone()),
                "has_more": false,
                "data": data,
            })
        }
    };
    let mut res = json_response(StatusCode::OK, &body);
    // Includes, on a cold cache, asking the providers for their lists (kept 10 minutes).
    stamp(res.headers_mut(), started, Duration::ZERO);
    res
}
