//! The public, OpenAI- and Anthropic-compatible API that a workspace's own apps call with a
//! workspace API token and the official SDKs, unchanged:
//!
//! * `POST /v1/chat/completions` — OpenAI wire format, streamed or not; fields Keyward does not
//!   know are passed through to OpenAI-compatible providers.
//! * `POST /v1/messages` — Anthropic wire format, translated to and from Keyward's internal
//!   (OpenAI) shape, so it reaches every provider.
//! * `GET /v1/models` — the models this workspace may use now, as `provider/model` ids (Anthropic
//!   shape when the caller sends `anthropic-version`).
//!
//! `Authorization: Bearer kw_…` and `x-api-key: kw_…` go through the same check. Every answer
//! carries `x-keyward-overhead-us` (time spent inside Keyward: the whole handling time minus the
//! wait on the provider), and chat answers `x-keyward-key-source`. Errors use the wire format's
//! own error shape and status, with `x-should-retry` telling the SDKs whether to retry.
//!
//! These routes sit outside the dashboard's middleware stack (no cookies, so no CSRF check; no
//! compression; no per-request log line — each request's usage record is its log): the hot path
//! is the token check (a hash and a map lookup), the key resolution (in memory) and the proxy.

pub(crate) mod anthropic;
mod chat;
mod openai;
pub mod openapi;
pub(crate) mod sse;

use crate::services::api_tokens::TokenAuth;
use crate::services::chat::ChatError;
use crate::services::limits::Refused;
use crate::services::usage::Served;
use crate::state::AppState;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use keyward::limits::{Headroom, Kind, Room};
use keyward::resolve::ResolveError;
use keyward::tokens::TokenScope;
use keyward::wire::{FailureKind, Wire, upstream_failure};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const OVERHEAD_HEADER: HeaderName = HeaderName::from_static("x-keyward-overhead-us");
pub const SOURCE_HEADER: HeaderName = HeaderName::from_static("x-keyward-key-source");
const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// Every route of the public API: method, path, handler (the router and the route
/// enumeration of the spend-control test both read it).
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        (
            "post",
            "/v1/chat/completions",
            post(openai::chat_completions),
        ),
        ("get", "/v1/models", get(openai::models)),
        ("post", "/v1/messages", post(anthropic::messages)),
        (
            "get",
            "/v1/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        ),
        ("any", "/v1/{*rest}", any(unknown_route)),
    ]
}

pub fn router() -> Router<AppState> {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
}

async fn unknown_route(headers: HeaderMap) -> Response {
    Failure::new(
        wire_of(&headers),
        FailureKind::NotFound,
        "unknown_route",
        "no such endpoint: Keyward serves /v1/chat/completions, /v1/messages and /v1/models \
         (described in /v1/openapi.json)",
    )
    .into_response()
}

/// Anthropic's SDK always sends `anthropic-version`; everything else is spoken to in OpenAI's
/// format.
fn wire_of(headers: &HeaderMap) -> Wire {
    if headers.contains_key("anthropic-version") {
        Wire::Anthropic
    } else {
        Wire::OpenAi
    }
}

/// A refusal, in the caller's wire format.
#[derive(Debug)]
pub struct Failure {
    wire: Wire,
    kind: FailureKind,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    started: Option<Instant>,
    /// OpenAI's `error.type` where it is more precise than the kind's (`requests`, `tokens`).
    openai_type: Option<&'static str>,
    /// The limit that refused, for the `x-ratelimit-*` headers (boxed: rarely set).
    headroom: Option<Box<Headroom>>,
}

impl Failure {
    pub fn new(
        wire: Wire,
        kind: FailureKind,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            wire,
            kind,
            code,
            message: message.into(),
            retry_after: None,
            started: None,
            openai_type: None,
            headroom: None,
        }
    }

    fn invalid(wire: Wire, message: impl Into<String>) -> Self {
        Self::new(
            wire,
            FailureKind::InvalidRequest,
            "invalid_request",
            message,
        )
    }

    /// Stamps the overhead header from this start (the provider was not waited on).
    fn since(mut self, started: Instant) -> Self {
        self.started = Some(started);
        self
    }

    /// The error document of the wire format.
    pub fn body(&self) -> Value {
        match self.wire {
            Wire::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.openai_type.unwrap_or(self.kind.openai_type()),
                "param": null,
                "code": self.code,
            }}),
            Wire::Anthropic => json!({"type": "error", "error": {
                "type": self.kind.anthropic_type(),
                "message": self.message,
            }}),
        }
    }

    /// A chat that failed: the provider's refusal, no key, no credits, or our own failure.
    fn of_chat(wire: Wire, provider: &str, e: &ChatError) -> Self {
        match e {
            ChatError::Upstream(u) => {
                let (kind, code) = upstream_failure(u.class);
                Failure {
                    retry_after: u.retry_after,
                    ..Self::new(wire, kind, code, format!("{provider}: {}", u.message))
                }
            }
            ChatError::Resolve(ResolveError::NoKey { provider }) => Self::new(
                wire,
                FailureKind::InvalidRequest,
                "no_key",
                format!("no key is configured for {provider} in this workspace"),
            ),
            ChatError::Resolve(ResolveError::NoModel { provider }) => Self::new(
                wire,
                FailureKind::InvalidRequest,
                "model_required",
                format!("name a model: {provider} has no default model"),
            ),
            ChatError::NoCredits => Self::new(
                wire,
                FailureKind::Billing,
                "no_credits",
                format!(
                    "this workspace has no credits left for platform keys: add your own {provider} key or top up"
                ),
            ),
            ChatError::Limited(r) => Self::of_limit(wire, r),
            ChatError::Unpriced(field) => Self::new(
                wire,
                FailureKind::InvalidRequest,
                "unpriced_field",
                format!(
                    "`{field}` costs more than tokens and is not available on this workspace's platform key for {provider}: add your own {provider} key to use it"
                ),
            ),
            ChatError::Service(s) => Self::of_service(wire, s),
        }
    }

    /// A refusal by a Keyward limit: `insufficient_quota` for a spent budget,
    /// `rate_limit_exceeded` for the per-minute and concurrency limits (Anthropic:
    /// `rate_limit_error` for both), with `Retry-After` when waiting helps.
    fn of_limit(wire: Wire, r: &Refused) -> Self {
        let Refused::Limit {
            kind,
            limit,
            retry_after,
            ..
        } = *r
        else {
            return Self::new(
                wire,
                FailureKind::Unavailable,
                "limits_unavailable",
                r.explain(),
            );
        };
        let (fk, code, ty) = match kind {
            Kind::Budget => (FailureKind::Quota, "insufficient_quota", None),
            Kind::Requests | Kind::Concurrent => (
                FailureKind::RateLimited,
                "rate_limit_exceeded",
                Some("requests"),
            ),
            Kind::InputTokens | Kind::OutputTokens => (
                FailureKind::RateLimited,
                "rate_limit_exceeded",
                Some("tokens"),
            ),
        };
        let room = Some(Room {
            limit,
            remaining: 0,
            reset_secs: retry_after.unwrap_or(60),
        });
        let headroom = match kind {
            Kind::Requests => Headroom {
                requests: room,
                tokens: None,
            },
            Kind::InputTokens | Kind::OutputTokens => Headroom {
                requests: None,
                tokens: room,
            },
            _ => Headroom::default(),
        };
        Failure {
            retry_after,
            openai_type: ty,
            headroom: Some(Box::new(headroom)),
            ..Self::new(wire, fk, code, r.explain())
        }
    }

    fn of_service(wire: Wire, e: &crate::error::ServiceError) -> Self {
        use crate::error::Class;
        match e.classify("public API") {
            Class::Invalid(m) => Self::invalid(wire, m),
            Class::NotFound => Self::new(wire, FailureKind::NotFound, "not_found", "not found"),
            Class::Unavailable => Self::new(
                wire,
                FailureKind::Unavailable,
                "unavailable",
                "the service is temporarily unavailable",
            ),
            // Refusals the public API has no answer for are its own failure.
            other => {
                tracing::error!(class = ?other, "unexpected refusal in the public API");
                Self::new(
                    wire,
                    FailureKind::Internal,
                    "internal",
                    "internal error; it has been logged",
                )
            }
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.status(self.wire))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = json_response(status, &self.body());
        let h = res.headers_mut();
        h.insert(
            SHOULD_RETRY,
            HeaderValue::from_static(if self.kind.retry() { "true" } else { "false" }),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(t) = self.started {
            stamp(h, t, Duration::ZERO);
        }
        if let Some(room) = &self.headroom {
            rate_limit_headers(h, room);
        }
        res
    }
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, for the tightest
/// per-minute limits a request met (none when no such limit applies).
pub fn rate_limit_headers(h: &mut HeaderMap, headroom: &Headroom) {
    for (room, [limit, remaining, reset]) in [
        (
            headroom.requests,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        ),
        (
            headroom.tokens,
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        ),
    ] {
        if let Some(r) = room {
            h.insert(HeaderName::from_static(limit), HeaderValue::from(r.limit));
            h.insert(
                HeaderName::from_static(remaining),
                HeaderValue::from(r.remaining),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{}s", r.reset_secs)) {
                h.insert(HeaderName::from_static(reset), v);
            }
        }
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Sets `x-keyward-overhead-us`: time since `started` minus the wait on the provider.
fn stamp(h: &mut HeaderMap, started: Instant, upstream: Duration) {
    let us = started.elapsed().saturating_sub(upstream).as_micros();
    h.insert(
        OVERHEAD_HEADER,
        HeaderValue::from(u64::try_from(us).unwrap_or(u64::MAX)),
    );
}

/// Sets the key-source and overhead headers of a chat answer.
fn chat_headers(h: &mut HeaderMap, started: Instant, served: Option<&Served>) {
    if let Some(s) = served {
        h.insert(SOURCE_HEADER, HeaderValue::from_static(s.source.as_str()));
        if s.fell_back {
            h.insert(
                HeaderName::from_static("x-keyward-fell-back"),
                HeaderValue::from_static("true"),
            );
        }
    }
    stamp(h, started, served.map_or(Duration::ZERO, |s| s.upstream));
}

/// The one check of the public API: a live token of a workspace, with the scope.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    wire: Wire,
    scope: TokenScope,
) -> Result<Arc<TokenAuth>, Failure> {
    let Some(token) = crate::identity::presented(headers).filter(|t| !t.is_empty()) else {
        return Err(Failure::new(
            wire,
            FailureKind::Authentication,
            "missing_api_key",
            "no API token: send a workspace API token as `Authorization: Bearer kw_…` or `x-api-key: kw_…`",
        ));
    };
    let auth = state
        .tokens
        .authenticate(&state.db, token)
        .await
        .map_err(|e| Failure::of_service(wire, &e))?
        .ok_or_else(|| {
            Failure::new(
                wire,
                FailureKind::Authentication,
                "invalid_api_key",
                "invalid API token: it is unknown, revoked or expired",
            )
        })?;
    if !auth.allows(scope) {
        return Err(Failure::new(
            wire,
            FailureKind::Permission,
            "insufficient_scope",
            format!("this token lacks the `{}` scope", scope.as_str()),
        ));
    }
    Ok(auth)
}

/// Reads a JSON object body (within the configured size limit).
async fn json_body(
    state: &AppState,
    wire: Wire,
    body: Body,
) -> Result<Map<String, Value>, Failure> {
    let limit = usize::try_from(state.settings.max_body_bytes).unwrap_or(usize::MAX);
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        Failure::new(
            wire,
            FailureKind::TooLarge,
            "request_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Failure::invalid(wire, "the body must be a JSON object")),
        Err(e) => Err(Failure::invalid(
            wire,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// The provider and model a public model id names, for this workspace (and chatbot).
async fn route_model(
    state: &AppState,
    wire: Wire,
    auth: &TokenAuth,
    id: &str,
) -> Result<(&'static str, String), Failure> {
    let (provider, model) = keyward::wire::split_model(id);
    if let Some(p) = provider {
        return Ok((p, model.to_string()));
    }
    let snap = state
        .keys
        .snapshot(&state.db, &state.vault, auth.workspace)
        .await
        .map_err(|e| Failure::of_service(wire, &e))?;
    let p = snap.default_provider(auth.chatbot).ok_or_else(|| {
        Failure::new(
            wire,
            FailureKind::InvalidRequest,
            "no_key",
            "this workspace has no key for any provider: add one, or name the model as provider/model",
        )
    })?;
    Ok((p, model.to_string()))
}
