//! The in-repo mock provider: stands in for the LLM providers no machine here can reach, in
//! tests, the end-to-end suite, the offline demo and the benchmark. Run it with
//! `keyward mock-provider --bind 127.0.0.1:9100`; point a provider's base URL at
//! `http://127.0.0.1:9100/v1` (OpenAI-compatible) or `http://127.0.0.1:9100` (Anthropic) and add
//! that `host:port` to `KEYWARD_ALLOWED_PRIVATE_UPSTREAMS`.
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
//! | `retryafter` | 429 with `Retry-After: 7` |
//! | `servererror` | 500 |
//! | `badrequest` / `forbidden` / `notfound` / `timeout408` | 400 / 403 / 404 / 408 |
//! | `hang` | never answers |
//! | `cut` | streams a few tokens, then drops the connection |
//! | `slow` | answers after 20 s |
//! | `nousage` | success, without token usage (OpenAI shape) |
//! | `error200` | 200 carrying an error object: the body, or a stream event after one chunk |
//! | `hugeusage` | success, reporting 10^18 tokens each way |
//!
//! Hostile answers (200, then a body no well-behaved provider sends; `GET /__mock/stats`
//! counts the bytes they managed to send in `hostile_bytes`):
//!
//! | the key contains | answer |
//! |---|---|
//! | `endless` | a body that never ends: JSON that never closes, or valid stream events forever |
//! | `huge` | a 100 MB JSON answer (a 100 MB model list for `/models`) |
//! | `longline` | a stream whose first line never ends |
//! | `trickle` | a body that sends one byte every 100 ms, forever |
//! | `stall` | a stream that sends one chunk, then nothing, forever |
//! | anything else | success |
//!
//! Chat replies are deterministic: `You said: <last user message>` (prefixed with
//! `[system: …] ` when there is a system prompt), one token per word, cut at `max_tokens` and at
//! the first stop sequence; usage counts words. `--keys` restricts the accepted keys,
//! `--latency-ms` delays the first byte and `--tokens-per-sec` paces streams.
//!
//! `GET /__mock/stats` reports how many authenticated requests (and chat requests) arrived (a test asserting that a
//! refused destination received nothing reads it), how many streams are open and the last
//! caller key's last four characters; `POST /__mock/revoke` `{"key": "…"}` revokes a key.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How the mock behaves.
#[derive(Clone, Debug, Default)]
pub struct MockConfig {
    /// Only these keys are accepted (others get 401); `None` accepts any key.
    pub keys: Option<Vec<String>>,
    /// Delay before the first byte of every answer.
    pub latency: Duration,
    /// Pace of streamed tokens; 0 sends them as fast as possible.
    pub tokens_per_sec: u32,
}

#[derive(Clone, Default)]
pub struct MockState {
    authenticated_requests: Arc<AtomicU64>,
    /// Authenticated chat requests (either wire format): what costs money at a real provider.
    chat_requests: Arc<AtomicU64>,
    /// Streams being sent right now (a dropped client connection ends one).
    open_streams: Arc<AtomicU64>,
    /// The last four characters of the last key that called (tests check which key was used).
    last_key_tail: Arc<std::sync::Mutex<String>>,
    /// Keys revoked at run time (`POST /__mock/revoke`), as a provider's console would.
    revoked: Arc<std::sync::Mutex<Vec<String>>>,
    /// The top-level fields of the last chat request (tests check what was passed through).
    last_fields: Arc<std::sync::Mutex<Vec<String>>>,
    /// Bytes sent by hostile answers (a client that stops reading stops this count).
    hostile_bytes: Arc<AtomicU64>,
    config: Arc<MockConfig>,
}

/// Counts an open stream for as long as it lives.
struct OpenStream(Arc<AtomicU64>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The models every key of the mock may use.
pub const MODELS: &[&str] = &[
    "mock-small",
    "mock-large",
    "gpt-4o-mini",
    "claude-haiku-4-5",
];

pub fn router() -> Router {
    router_with(MockConfig::default())
}

pub fn router_with(config: MockConfig) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/__mock/stats", get(stats))
        .route("/__mock/revoke", post(revoke))
        .with_state(MockState {
            authenticated_requests: Arc::default(),
            chat_requests: Arc::default(),
            open_streams: Arc::default(),
            last_key_tail: Arc::default(),
            revoked: Arc::default(),
            last_fields: Arc::default(),
            hostile_bytes: Arc::default(),
            config: Arc::new(config),
        })
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
async fn injected(state: &MockState, caller: &Caller) -> Option<Response> {
    let (key, anthropic) = match caller {
        Caller::OpenAi(k) => (k.as_str(), false),
        Caller::Anthropic(k) => (k.as_str(), true),
    };
    if let Ok(mut tail) = state.last_key_tail.lock() {
        *tail = key
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
    }
    if !state.config.latency.is_zero() {
        tokio::time::sleep(state.config.latency).await;
    }
    let revoked_here = state
        .revoked
        .lock()
        .map(|r| r.iter().any(|k| k == key))
        .unwrap_or(false);
    let unknown = revoked_here
        || state
            .config
            .keys
            .as_ref()
            .is_some_and(|keys| !keys.iter().any(|k| k == key));
    if key.contains("invalid") || key.contains("revoked") || unknown {
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
    if key.contains("retryafter") {
        let mut r = error(
            anthropic,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate limit reached; retry later.",
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("7"));
        return Some(r);
    }
    for (marker, status, kind) in [
        (
            "badrequest",
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        ("forbidden", StatusCode::FORBIDDEN, "permission_error"),
        ("notfound", StatusCode::NOT_FOUND, "not_found_error"),
        ("timeout408", StatusCode::REQUEST_TIMEOUT, "timeout_error"),
    ] {
        if key.contains(marker) {
            return Some(error(anthropic, status, kind, "Refused by the mock."));
        }
    }
    if key.contains("servererror") {
        return Some(error(
            anthropic,
            StatusCode::INTERNAL_SERVER_ERROR,
            if anthropic {
                "api_error"
            } else {
                "server_error"
            },
            "Internal error at 10.1.2.3: upstream worker pool exhausted.",
        ));
    }
    if key.contains("hang") {
        tokio::time::sleep(Duration::from_secs(3600)).await;
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

/// What a hostile answer is made of: `head`, then `body` repeated (every `every`) until `total`
/// bytes were sent (`None`: forever), then `tail`.
struct Hostile {
    content_type: &'static str,
    head: String,
    body: String,
    every: Duration,
    total: Option<u64>,
    tail: String,
}

impl Hostile {
    fn into_response(self, state: &MockState) -> Response {
        let sent = state.hostile_bytes.clone();
        let Hostile {
            content_type,
            head,
            body,
            every,
            total,
            tail,
        } = self;
        let body = axum::body::Bytes::from(body);
        let limit = total.unwrap_or(u64::MAX);
        let pieces = stream::unfold(0u64, move |done| {
            let body = body.clone();
            async move {
                if done >= limit {
                    return None;
                }
                if !every.is_zero() {
                    tokio::time::sleep(every).await;
                }
                let next = done.saturating_add(body.len() as u64);
                Some((body, next))
            }
        });
        let all = stream::once(std::future::ready(axum::body::Bytes::from(head)))
            .chain(pieces)
            .chain(stream::once(std::future::ready(axum::body::Bytes::from(
                tail,
            ))))
            .map(move |b| {
                sent.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok::<_, std::io::Error>(b)
            });
        let mut r = axum::body::Body::from_stream(all).into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(content_type));
        r
    }
}

/// The hostile answer the key asks for, if any (`what`: the endpoint's kind of answer).
fn hostile(key: &str, what: Answer) -> Option<Hostile> {
    const JSON: &str = "application/json";
    const SSE: &str = "text/event-stream";
    let filler = |n: usize| "a".repeat(n);
    let chunk = r#"data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"spam "},"finish_reason":null}]}"#;
    let json_head = match what {
        Answer::Models => r#"{"object":"list","data":[{"id":""#,
        _ => {
            r#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""#
        }
    };
    let json_tail = match what {
        Answer::Models => r#""}]}"#,
        _ => r#""},"finish_reason":"stop"}]}"#,
    };
    let plain = |body: String, every: Duration, total: Option<u64>, tail: &str| Hostile {
        content_type: JSON,
        head: json_head.into(),
        body,
        every,
        total,
        tail: tail.into(),
    };
    if key.contains("endless") {
        return Some(match what {
            Answer::Stream => Hostile {
                content_type: SSE,
                head: String::new(),
                body: format!("{chunk}\n\n").repeat(64),
                every: Duration::ZERO,
                total: None,
                tail: String::new(),
            },
            _ => plain(filler(64 << 10), Duration::ZERO, None, ""),
        });
    }
    if key.contains("huge") && !key.contains("hugeusage") {
        return Some(plain(
            filler(64 << 10),
            Duration::ZERO,
            Some(100_000_000),
            json_tail,
        ));
    }
    if key.contains("longline") && what == Answer::Stream {
        return Some(Hostile {
            content_type: SSE,
            head: "data: ".into(),
            body: filler(64 << 10),
            every: Duration::ZERO,
            total: None,
            tail: String::new(),
        });
    }
    if key.contains("trickle") {
        return Some(Hostile {
            content_type: if what == Answer::Stream { SSE } else { JSON },
            head: if what == Answer::Stream {
                format!("{chunk}\n\n: ")
            } else {
                json_head.into()
            },
            body: " ".into(),
            every: Duration::from_millis(100),
            total: None,
            tail: String::new(),
        });
    }
    if key.contains("stall") && what == Answer::Stream {
        return Some(Hostile {
            content_type: SSE,
            head: format!("{chunk}\n\n"),
            body: String::new(),
            every: Duration::from_secs(3600),
            total: None,
            tail: String::new(),
        });
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Models,
    Complete,
    Stream,
}

/// The hostile or error-in-200 answer the key asks for on a chat endpoint, if any.
fn chat_override(state: &MockState, who: &Caller, req: &Value) -> Option<Response> {
    let streaming = req.get("stream").and_then(Value::as_bool) == Some(true);
    let what = if streaming {
        Answer::Stream
    } else {
        Answer::Complete
    };
    if let Some(h) = hostile(key_of(who), what) {
        return Some(h.into_response(state));
    }
    if !key_of(who).contains("error200") {
        return None;
    }
    let anthropic = matches!(who, Caller::Anthropic(_));
    let detail = "Internal error at 10.1.2.3: upstream worker pool exhausted.";
    let error = if anthropic {
        json!({"type": "error", "error": {"type": "overloaded_error", "message": detail}})
    } else {
        json!({"error": {"message": detail, "type": "server_error", "code": 500}})
    };
    if !streaming {
        return Some(Json(error).into_response());
    }
    let first = if anthropic {
        Event::default().event("message_start").data(
            json!({"type": "message_start", "message": {"id": "msg_e", "type": "message",
                "role": "assistant", "model": "m", "content": [],
                "usage": {"input_tokens": 1, "output_tokens": 1}}})
            .to_string(),
        )
    } else {
        Event::default().data(
            json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]})
            .to_string(),
        )
    };
    let failure = if anthropic {
        Event::default().event("error").data(error.to_string())
    } else {
        Event::default().data(error.to_string())
    };
    Some(Sse::new(paced(state, vec![first, failure], false)).into_response())
}

/// Token counts as the provider reports them (`hugeusage`: absurd ones).
fn reported(who: &Caller, tokens: u64) -> u64 {
    if key_of(who).contains("hugeusage") {
        1_000_000_000_000_000_000
    } else {
        tokens
    }
}

fn key_of(who: &Caller) -> &str {
    match who {
        Caller::OpenAi(k) | Caller::Anthropic(k) => k,
    }
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
    if let Some(failure) = injected(&state, &who).await {
        return failure;
    }
    if let Some(h) = hostile(key_of(&who), Answer::Models) {
        return h.into_response(&state);
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
    Json(json!({
        "authenticated_requests": state.authenticated_requests.load(Ordering::Relaxed),
        "chat_requests": state.chat_requests.load(Ordering::Relaxed),
        "open_streams": state.open_streams.load(Ordering::Relaxed),
        "last_key_tail": state.last_key_tail.lock().map(|t| t.clone()).unwrap_or_default(),
        "last_fields": state.last_fields.lock().map(|t| t.clone()).unwrap_or_default(),
        "hostile_bytes": state.hostile_bytes.load(Ordering::Relaxed),
    }))
}

/// `POST /__mock/revoke` with `{"key": "…"}`: from now on that key is refused with 401, as
/// when its owner revokes it in the provider's console. Streams already running go on.
async fn revoke(State(state): State<MockState>, Json(body): Json<Value>) -> StatusCode {
    match body.get("key").and_then(Value::as_str) {
        Some(k) if !k.is_empty() => {
            if let Ok(mut r) = state.revoked.lock() {
                r.push(k.to_string());
            }
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_with(listener, MockConfig::default()).await
}

pub async fn serve_with(
    listener: tokio::net::TcpListener,
    config: MockConfig,
) -> std::io::Result<()> {
    axum::serve(listener, router_with(config)).await
}

/// The text of a message's `content`: a string, or an array of `{type: "text", text}` parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The reply, its tokens, why it stopped, and the prompt's token count.
struct Reply {
    tokens: Vec<String>,
    finish: &'static str,
    prompt_tokens: u64,
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn reply(
    system: Option<String>,
    messages: &[Value],
    max_tokens: Option<u64>,
    stop: &[String],
) -> Reply {
    let mut prompt_tokens = system.as_deref().map_or(0, words);
    let mut last_user = String::new();
    for m in messages {
        let text = text_of(m.get("content").unwrap_or(&Value::Null));
        prompt_tokens += words(&text);
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last_user = text;
        }
    }
    let mut text = format!(
        "{}You said: {last_user}",
        system
            .map(|s| format!("[system: {s}] "))
            .unwrap_or_default()
    );
    let mut finish = "stop";
    if let Some(at) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(at);
        finish = "stop_sequence";
    }
    let mut tokens: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
    if let Some(max) = max_tokens
        && tokens.len() as u64 > max
    {
        tokens.truncate(max as usize);
        finish = "length";
    }
    Reply {
        tokens,
        finish,
        prompt_tokens,
    }
}

fn stops(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn bad_request(anthropic: bool, message: &str) -> Response {
    error(
        anthropic,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
    )
}

/// A token stream paced by the configuration; `cut` ends it with an error after three tokens,
/// which drops the connection mid-response.
fn paced(
    state: &MockState,
    events: Vec<Event>,
    cut: bool,
) -> impl Stream<Item = Result<Event, std::io::Error>> + use<> {
    let every = match state.config.tokens_per_sec {
        0 => Duration::ZERO,
        n => Duration::from_secs_f64(1.0 / f64::from(n)),
    };
    let total = events.len();
    state.open_streams.fetch_add(1, Ordering::Relaxed);
    let open = Arc::new(OpenStream(state.open_streams.clone()));
    stream::iter(events.into_iter().enumerate()).then(move |(i, e)| {
        let _open = open.clone();
        async move {
            let _open = _open;
            if cut && i == total.min(4) {
                // Let what was sent so far reach the client first, as a real cut would.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(std::io::Error::other("connection cut by the mock"));
            }
            if !every.is_zero() && i > 0 {
                tokio::time::sleep(every).await;
            }
            Ok(e)
        }
    })
}

async fn chat_completions(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(who) = caller(&headers) else {
        return error(
            false,
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "You didn't provide an API key.",
        );
    };
    state.authenticated_requests.fetch_add(1, Ordering::Relaxed);
    state.chat_requests.fetch_add(1, Ordering::Relaxed);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(false, "We could not parse the JSON body of your request.");
    };
    if let (Some(o), Ok(mut last)) = (req.as_object(), state.last_fields.lock()) {
        *last = o.keys().cloned().collect();
    }
    if let Some(failure) = injected(&state, &who).await {
        return failure;
    }
    if let Some(answer) = chat_override(&state, &who, &req) {
        return answer;
    }
    let Some(model) = req.get("model").and_then(Value::as_str).map(str::to_string) else {
        return bad_request(false, "you must provide a model parameter");
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad_request(false, "'messages' is a required property");
    };
    let system = messages
        .iter()
        .filter(|m| {
            matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            )
        })
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .reduce(|a, b| format!("{a}\n{b}"));
    let rest: Vec<Value> = messages
        .iter()
        .filter(|m| {
            !matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            )
        })
        .cloned()
        .collect();
    let max = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_u64);
    let r = reply(system, &rest, max, &stops(req.get("stop")));
    let finish = if r.finish == "stop_sequence" {
        "stop"
    } else {
        r.finish
    };
    let (prompt, completion) = (
        reported(&who, r.prompt_tokens),
        reported(&who, r.tokens.len() as u64),
    );
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion)});
    let id = format!(
        "chatcmpl-mock{}",
        state.authenticated_requests.load(Ordering::Relaxed)
    );
    let created = 1_700_000_000u64;
    // Some OpenAI-compatible providers report no usage: keys containing `nousage` mimic them.
    let no_usage = matches!(&who, Caller::OpenAi(k) if k.contains("nousage"));
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        let mut body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": r.tokens.concat()}, "finish_reason": finish}],
            "usage": usage,
        });
        if no_usage && let Some(o) = body.as_object_mut() {
            o.remove("usage");
        }
        return Json(body).into_response();
    }
    let include_usage = !no_usage
        && req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
    let chunk = |delta: Value, finish: Value| {
        Event::default().data(
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string(),
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend(
        r.tokens
            .iter()
            .map(|t| chunk(json!({"content": t}), Value::Null)),
    );
    events.push(chunk(json!({}), json!(finish)));
    if include_usage {
        events.push(
            Event::default().data(
                json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": usage,
                })
                .to_string(),
            ),
        );
    }
    events.push(Event::default().data("[DONE]"));
    let cut = matches!(&who, Caller::OpenAi(k) if k.contains("cut"));
    Sse::new(paced(&state, events, cut)).into_response()
}

async fn messages(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(who) = caller(&headers) else {
        return error(
            true,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        );
    };
    state.authenticated_requests.fetch_add(1, Ordering::Relaxed);
    state.chat_requests.fetch_add(1, Ordering::Relaxed);
    if headers.get("anthropic-version").is_none() {
        return bad_request(true, "anthropic-version: header is required");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(
            true,
            "There was an issue with the JSON body of your request.",
        );
    };
    if let Some(failure) = injected(&state, &who).await {
        return failure;
    }
    if let Some(answer) = chat_override(&state, &who, &req) {
        return answer;
    }
    let (Some(model), Some(messages), Some(max)) = (
        req.get("model").and_then(Value::as_str).map(str::to_string),
        req.get("messages").and_then(Value::as_array),
        req.get("max_tokens").and_then(Value::as_u64),
    ) else {
        return bad_request(true, "model, messages and max_tokens are required");
    };
    if messages.iter().any(|m| {
        !matches!(
            m.get("role").and_then(Value::as_str),
            Some("user" | "assistant")
        )
    }) {
        return bad_request(true, "messages: roles must be user or assistant");
    }
    let system = match req.get("system") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(v @ Value::Array(_)) => Some(text_of(v)),
        _ => None,
    };
    let r = reply(
        system,
        messages,
        Some(max),
        &stops(req.get("stop_sequences")),
    );
    let stop_reason = match r.finish {
        "length" => "max_tokens",
        "stop_sequence" => "stop_sequence",
        _ => "end_turn",
    };
    let output = reported(&who, r.tokens.len() as u64);
    let prompt_tokens = reported(&who, r.prompt_tokens);
    let id = format!(
        "msg_mock{}",
        state.authenticated_requests.load(Ordering::Relaxed)
    );
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        return Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": r.tokens.concat()}],
            "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": output},
        }))
        .into_response();
    }
    let ev = |name: &str, data: Value| Event::default().event(name).data(data.to_string());
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    events.extend(r.tokens.iter().map(|t| ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}))));
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output}})));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    let cut = matches!(&who, Caller::Anthropic(k) if k.contains("cut"));
    Sse::new(paced(&state, events, cut)).into_response()
}
