//! `POST /v1/messages` in Anthropic's wire format. The request is translated into Keyward's
//! internal (OpenAI) shape, so it can go to any provider — OpenAI-compatible ones directly,
//! Anthropic through the gateway's own translation — and the answer, whole or streamed, is
//! translated back into a Messages answer.
//!
//! The translation itself, both directions, is [`crate::gateway::anthropic`]; this is the route.

use super::chat::prepare;
use super::{Failure, authenticate, json_body};
use crate::gateway::anthropic::{ToAnthropic, from_completion, to_internal};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use keyward::tokens::TokenScope;
use keyward::wire::Wire;
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
