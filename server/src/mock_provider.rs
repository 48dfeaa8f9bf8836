//! The in-repo mock provider: stands in for the LLM providers no machine here can reach, in
//! tests, the end-to-end suite, the offline demo and the benchmark. Run it with
//! `keyward mock-provider --bind 127.0.0.1:9100`; point a provider's base URL at
//! `http://127.0.0.1:9100/v1` (OpenAI-compatible) or `http://127.0.0.1:9100` (Anthropic) and add
//! that `host:port` to `KEYWARD_UPSTREAM_ALLOWLIST`.
//!
//! It speaks both wire formats (an `x-api-key` header selects Anthropic's shapes) and injects
//! failures chosen by the key itself, so a test picks the behaviour by the key it stores:
//!
//! | the key contains | answer |
//! |---|---|
//! | `invalid` or `revoked` | 401 invalid API key |
//! | `noquota` | 429 `insufficient_quota` |
//! | `ratelimit` | 429 rate limited |
//! | `unavailable` | 503 |
//! | `slow` | answers after 20 s |
//! | anything else | success |
//!
//! `GET /__mock/stats` reports how many authenticated requests arrived (a test asserting that a
//! refused destination received nothing reads it).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Default)]
pub struct MockState {
    authenticated_requests: Arc<AtomicU64>,
}

/// The models every key of the mock may use.
pub const MODELS: &[&str] = &[
    "mock-small",
    "mock-large",
    "gpt-4o-mini",
    "claude-haiku-4-5",
];

pub fn router() -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/__mock/stats", get(stats))
        .with_state(MockState::default())
}

enum Caller {
    OpenAi(String),
    Anthropic(String),
}

fn caller(headers: &HeaderMap) -> Option<Caller> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(Caller::Anthropic(k.to_string()));
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| Caller::OpenAi(k.to_string()))
}

fn error(anthropic: bool, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = if anthropic {
        json!({"type": "error", "error": {"type": kind, "message": message}})
    } else {
        json!({"error": {"message": message, "type": kind, "code": kind}})
    };
    (status, Json(body)).into_response()
}

/// Applies the failure the key asks for; `None` means proceed.
async fn injected(caller: &Caller) -> Option<Response> {
    let (key, anthropic) = match caller {
        Caller::OpenAi(k) => (k.as_str(), false),
        Caller::Anthropic(k) => (k.as_str(), true),
    };
    if key.contains("invalid") || key.contains("revoked") {
        return Some(error(
            anthropic,
            StatusCode::UNAUTHORIZED,
            if anthropic {
                "authentication_error"
            } else {
                "invalid_api_key"
            },
            "Incorrect API key provided.",
        ));
    }
    if key.contains("noquota") {
        return Some(error(
            anthropic,
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
        ));
    }
    if key.contains("ratelimit") {
        return Some(error(
            anthropic,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate limit reached for requests.",
        ));
    }
    if key.contains("unavailable") {
        return Some(error(
            anthropic,
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded_error",
            "The server is overloaded.",
        ));
    }
    if key.contains("slow") {
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    None
}

async fn models(State(state): State<MockState>, headers: HeaderMap) -> Response {
    let Some(who) = caller(&headers) else {
        return error(
            false,
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "You didn't provide an API key.",
        );
    };
    state.authenticated_requests.fetch_add(1, Ordering::Relaxed);
    if let Some(failure) = injected(&who).await {
        return failure;
    }
    match who {
        Caller::OpenAi(_) => Json(json!({
            "object": "list",
            "data": MODELS.iter().map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "mock"})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Caller::Anthropic(_) => Json(json!({
            "data": MODELS.iter().map(|m| json!({"id": m, "type": "model", "display_name": m, "created_at": "2025-01-01T00:00:00Z"})).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": MODELS.first(),
            "last_id": MODELS.last(),
        }))
        .into_response(),
    }
}

async fn stats(State(state): State<MockState>) -> Json<serde_json::Value> {
    Json(json!({"authenticated_requests": state.authenticated_requests.load(Ordering::Relaxed)}))
}

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}
