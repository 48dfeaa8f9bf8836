//! `POST /v1/chat/completions` and `GET /v1/models` in OpenAI's wire format.

use super::stream::{Format, SseBody};
use super::{
    Failure, authenticate, chat_headers, json_body, json_response, route_model, stamp, wire_of,
};
use crate::services::api_tokens::TokenAuth;
use crate::services::chat::{self as chat_service, ChatCall, Deps};
use crate::services::usage::{Ending, UsageMeter};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward::tokens::TokenScope;
use keyward::usage::{Outcome, UsageChannel};
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

/// A chat request of the public API, in Keyward's internal (OpenAI) shape, on its way: routes
/// it, runs it (streamed or not), meters it. Shared by both wire formats.
pub(super) struct Prepared {
    pub auth: std::sync::Arc<TokenAuth>,
    pub provider: &'static str,
    pub model: String,
    pub request: Map<String, Value>,
    pub stream: bool,
}

pub(super) async fn prepare(
    state: &AppState,
    wire: Wire,
    auth: std::sync::Arc<TokenAuth>,
    request: Map<String, Value>,
    model_id: &str,
    stream: bool,
) -> Result<Prepared, Failure> {
    let (provider, model) = route_model(state, wire, &auth, model_id).await?;
    Ok(Prepared {
        auth,
        provider,
        model,
        request,
        stream,
    })
}

impl Prepared {
    fn meter(&self) -> UsageMeter {
        UsageMeter {
            workspace: self.auth.workspace,
            chatbot: self.auth.chatbot,
            conversation: None,
            api_token: Some(self.auth.token_id),
            channel: UsageChannel::Api,
            provider: self.provider.to_string(),
            model: Some(self.model.clone()),
            input_estimate: UsageMeter::estimate_input(&self.request),
            started: std::time::Instant::now(),
        }
    }

    fn call(self) -> ChatCall {
        ChatCall {
            workspace: self.auth.workspace,
            chatbot: self.auth.chatbot,
            provider: self.provider.to_string(),
            model: Some(self.model),
            request: self.request,
            stream: self.stream,
        }
    }

    /// Runs the request: the provider's whole answer (OpenAI `chat.completion`) or a stream
    /// written out in `format`.
    pub(super) async fn run(
        self,
        state: &AppState,
        wire: Wire,
        started: Instant,
        format: impl FnOnce() -> Format,
        complete: impl FnOnce(Value) -> Value,
    ) -> Result<Response, Failure> {
        let meter = self.meter();
        let provider = self.provider;
        if !self.stream {
            let (result, served) =
                chat_service::complete_metered_traced(state, self.call(), meter).await;
            return match result {
                Ok((body, _)) => {
                    let mut res = json_response(StatusCode::OK, &complete(body));
                    chat_headers(res.headers_mut(), started, served.as_ref());
                    Ok(res)
                }
                Err(e) => {
                    let mut res = Failure::of_chat(wire, provider, &e).into_response();
                    chat_headers(res.headers_mut(), started, served.as_ref());
                    Ok(res)
                }
            };
        }
        let (result, served) = chat_service::chat_traced(&Deps::of(state), self.call()).await;
        match result {
            Ok(outcome) => match outcome.reply {
                crate::gateway::chat::ChatReply::Stream(inner) => {
                    let body = SseBody::new(
                        inner,
                        format(),
                        state.clone(),
                        meter,
                        served.clone(),
                        provider.to_string(),
                    );
                    let mut res = Response::new(Body::from_stream(body));
                    let h = res.headers_mut();
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/event-stream"),
                    );
                    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    chat_headers(h, started, served.as_ref());
                    Ok(res)
                }
                crate::gateway::chat::ChatReply::Complete { .. } => Err(Failure::of_service(
                    wire,
                    &crate::error::ServiceError::Internal(
                        "a streaming call returned a whole answer".into(),
                    ),
                )),
            },
            Err(e) => {
                let pricing = state.credits.pricing(&state.db).await.ok();
                state
                    .usage
                    .record(meter.finish(
                        pricing.as_deref(),
                        Ending {
                            served: served.as_ref(),
                            usage: None,
                            output: "",
                            first_token_ms: None,
                            outcome: Outcome::Error,
                            error_class: Some(e.class().to_string()),
                        },
                    ))
                    .await;
                let mut res = Failure::of_chat(wire, provider, &e).into_response();
                chat_headers(res.headers_mut(), started, served.as_ref());
                Ok(res)
            }
        }
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
            || Format::OpenAi { usage_chunk },
            |body| body,
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
