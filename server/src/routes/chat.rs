//! The chat stream endpoints (plain axum: a server-sent-event body that the wasm client reads
//! as it arrives and aborts to stop a reply).
//!
//! * `POST /api/chat/{workspace-slug}/{chatbot-slug}` — the public chat page. No account needed
//!   for a public chatbot; a private one answers only its workspace's members (others get 404).
//!   The visitor is known by a random cookie id; per-visitor and per-address rate limits and the
//!   chatbot's daily cap apply.
//! * `POST /api/workspaces/{id}/playground` — the dashboard playground for signed-in members:
//!   any chatbot of the workspace (or none: the workspace's own keys), any model.
//!
//! Both take a JSON [`ChatSend`] and answer `text/event-stream`, one JSON [`ChatEvent`] per
//! event; refusals before the reply starts are JSON errors with a status.

use crate::auth::authorize;
use crate::entities::chatbot;
use crate::error::{Class, ServiceError, error_response};
use crate::identity::{Caller, visitor_cookie_name};
use crate::services::accounts::SessionUser;
use crate::services::chatbots;
use crate::services::conversations::{self, Channel, Owner};
use crate::services::playground::{self, Turn};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use keyward::chat::{ChatEvent, ChatSend};
use keyward::policy::Action;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// A visitor id lives a year.
const VISITOR_MAX_AGE_DAYS: i64 = 365;

/// The chat endpoints' one error type: a status, a machine code and a sentence for the reader.
#[derive(Debug)]
pub enum ChatRouteError {
    BadRequest(String),
    NotFound,
    Unauthorized,
    Forbidden,
    /// The visitor (or their address) sends too fast.
    TooFast(u32),
    /// The chatbot's daily message cap is reached.
    DailyCap,
    Unavailable,
    Internal,
}

impl From<ServiceError> for ChatRouteError {
    fn from(e: ServiceError) -> Self {
        match e.classify("chat request") {
            Class::Invalid(m) | Class::Conflict(m) => Self::BadRequest(m),
            Class::NotFound => Self::NotFound,
            Class::Unauthorized => Self::Unauthorized,
            Class::Forbidden => Self::Forbidden,
            Class::RateLimited(s) => Self::TooFast(s),
            Class::Unavailable => Self::Unavailable,
            Class::Internal => Self::Internal,
        }
    }
}

impl IntoResponse for ChatRouteError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "This chat does not exist.".into(),
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Please sign in to continue.".into(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "You do not have permission to do that.".into(),
            ),
            Self::TooFast(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "You're sending messages too quickly. Please wait {secs} second{} and try again.",
                    if *secs == 1 { "" } else { "s" }
                ),
            ),
            Self::DailyCap => (
                StatusCode::TOO_MANY_REQUESTS,
                "daily_cap",
                "This chatbot has reached its message limit for today. Please come back tomorrow."
                    .into(),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The service is temporarily unavailable. Please try again shortly.".into(),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side; it has been logged.".into(),
            ),
        };
        let retry = match self {
            Self::TooFast(s) => Some(s),
            Self::DailyCap => {
                let now = chrono::Utc::now();
                let tomorrow = conversations::today_utc(now) + chrono::Duration::days(1);
                Some(u32::try_from((tomorrow - now).num_seconds().max(1)).unwrap_or(u32::MAX))
            }
            _ => None,
        };
        error_response(status, code, &message, retry)
    }
}

fn new_visitor_id() -> Result<String, ChatRouteError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a visitor id");
        ChatRouteError::Internal
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn visitor_set_cookie(id: &str, https: bool) -> Option<HeaderValue> {
    let c = cookie::Cookie::build((visitor_cookie_name(https), id.to_string()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(https)
        .max_age(cookie::time::Duration::days(VISITOR_MAX_AGE_DAYS))
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

fn body(payload: Result<Json<ChatSend>, JsonRejection>) -> Result<ChatSend, ChatRouteError> {
    // The rejection's own text can quote the body: only its class is answered.
    payload.map(|Json(b)| b).map_err(|e| {
        tracing::debug!(status = %e.status(), "chat request body refused");
        ChatRouteError::BadRequest(
            "the request must be JSON: {\"message\": \"…\", \"model\": \"provider/model\"}".into(),
        )
    })
}

fn uuid_of(s: Option<&str>) -> Result<Option<Uuid>, ChatRouteError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Uuid::parse_str(s)
            .map(Some)
            .map_err(|_| ChatRouteError::NotFound),
    }
}

/// The reply as server-sent events.
fn sse(rx: mpsc::Receiver<ChatEvent>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let kind = match &event {
            ChatEvent::Start { .. } => "start",
            ChatEvent::Delta { .. } => "delta",
            ChatEvent::Done { .. } => "done",
            ChatEvent::Error { .. } => "error",
        };
        let sse = Event::default()
            .event(kind)
            .json_data(&event)
            .unwrap_or_else(|_| Event::default().event("error").data("{}"));
        Some((Ok::<_, Infallible>(sse), rx))
    });
    let mut res = Sse::new(stream)
        // Comments while the provider thinks: proxies keep the connection, and a reader that
        // has gone is noticed even when no token arrives.
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// Whether `who` is a member (or platform admin) allowed to chat in the chatbot's workspace.
async fn is_member(state: &AppState, who: Option<&SessionUser>, bot: &chatbot::Model) -> bool {
    match who {
        Some(_) => authorize(&state.db, who, bot.workspace_id, Action::Chat)
            .await
            .is_ok(),
        None => false,
    }
}

/// `POST /api/chat/{workspace}/{chatbot}`: a visitor's message to a chatbot.
pub async fn visitor_send(
    State(state): State<AppState>,
    Path((workspace_slug, chatbot_slug)): Path<(String, String)>,
    caller: Caller,
    payload: Result<Json<ChatSend>, JsonRejection>,
) -> Result<Response, ChatRouteError> {
    let https = caller.https;
    let send = body(payload)?;
    let (_, bot) = chatbots::by_slugs(&state.db, &workspace_slug, &chatbot_slug).await?;
    // Membership matters only for a private chatbot: public ones skip the session lookups.
    if !bot.public {
        let who = caller.user(&state.db).await?;
        if !is_member(&state, who, &bot).await {
            return Err(ChatRouteError::NotFound);
        }
    }
    let (visitor, set_cookie) = match caller.visitor.clone() {
        Some(v) => (v, None),
        None => {
            let v = new_visitor_id()?;
            let c = visitor_set_cookie(&v, https);
            (v, c)
        }
    };
    let hash = conversations::visitor_hash(&visitor);
    state
        .visitor_limits
        .check(&hash, caller.ip())
        .map_err(ChatRouteError::TooFast)?;
    if bot.daily_cap > 0
        && conversations::visitor_messages_today(&state.db, bot.id).await?
            >= u64::try_from(bot.daily_cap).unwrap_or(0)
    {
        tracing::info!(chatbot = %bot.id, "a chatbot's daily cap refused a message");
        return Err(ChatRouteError::DailyCap);
    }
    let turn = Turn {
        workspace: bot.workspace_id,
        conversation: uuid_of(send.conversation.as_deref())?,
        chatbot: Some(bot),
        channel: Channel::Visitor,
        owner: Owner::Visitor(hash),
        model: send.model,
        message: send.message,
        members: false,
    };
    let rx = playground::send(&state.chat, &state.db, turn).await?;
    let mut res = sse(rx);
    if let Some(c) = set_cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(res)
}

/// `POST /api/workspaces/{id}/playground`: a member's message from the dashboard playground.
pub async fn playground_send(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    caller: Caller,
    payload: Result<Json<ChatSend>, JsonRejection>,
) -> Result<Response, ChatRouteError> {
    let who = caller.user(&state.db).await?;
    let workspace = Uuid::parse_str(&workspace).map_err(|_| ChatRouteError::NotFound)?;
    let ok = authorize(&state.db, who, workspace, Action::Chat).await?;
    let send = body(payload)?;
    let bot = match uuid_of(send.chatbot.as_deref())? {
        Some(id) => Some(chatbots::get(&state.db, workspace, id).await?),
        None => None,
    };
    let turn = Turn {
        workspace,
        conversation: uuid_of(send.conversation.as_deref())?,
        chatbot: bot,
        channel: Channel::Dashboard,
        owner: Owner::Member(ok.user.user_id),
        model: send.model,
        message: send.message,
        members: true,
    };
    Ok(sse(playground::send(&state.chat, &state.db, turn).await?))
}
