//! The wire-neutral half of a public chat request: routed to a provider and model, run through
//! the chat pipeline (which meters it), answered whole or as a stream in the caller's wire
//! format. `openai.rs` and `anthropic.rs` only translate at the edges.

use super::sse::{SseBody, SseEncoder};
use super::{Failure, chat_headers, json_response, route_model};
use crate::gateway::chat::Usage;
use crate::services::api_tokens::TokenAuth;
use crate::services::chat::{ChatCall, ChatFailure, ReplyBody};
use crate::services::usage::UsageMeter;
use crate::state::AppState;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward::usage::UsageChannel;
use keyward::wire::Wire;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// A chat request of the public API, in Keyward's internal (OpenAI) shape, routed.
pub(super) struct Prepared {
    pub auth: Arc<TokenAuth>,
    pub provider: &'static str,
    pub model: String,
    pub request: Map<String, Value>,
    pub stream: bool,
}

pub(super) async fn prepare(
    state: &AppState,
    wire: Wire,
    auth: Arc<TokenAuth>,
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
            started: Instant::now(),
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

    /// Runs the request: the provider's whole answer (an OpenAI `chat.completion` and its
    /// usage, which `complete` turns into the wire format's answer) or a stream written out by
    /// the encoder `sse` makes.
    pub(super) async fn run<E: SseEncoder>(
        self,
        state: &AppState,
        wire: Wire,
        started: Instant,
        sse: impl FnOnce() -> E,
        complete: impl FnOnce(Value, Option<Usage>) -> Value,
    ) -> Result<Response, Failure> {
        let meter = self.meter();
        let provider = self.provider;
        let reply = match state.chat.run(self.call(), meter).await {
            Ok(reply) => reply,
            Err(ChatFailure { error, served }) => {
                let mut res = Failure::of_chat(wire, provider, &error).into_response();
                chat_headers(res.headers_mut(), started, served.as_ref());
                return Ok(res);
            }
        };
        let mut res = match reply.body {
            ReplyBody::Complete { body, usage } => {
                json_response(StatusCode::OK, &complete(body, usage))
            }
            ReplyBody::Stream(stream) => {
                let body = SseBody::new(stream, sse(), provider.to_string());
                let mut res = Response::new(Body::from_stream(body));
                let h = res.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                res
            }
        };
        chat_headers(res.headers_mut(), started, Some(&reply.served));
        super::rate_limit_headers(res.headers_mut(), &reply.headroom);
        Ok(res)
    }
}
