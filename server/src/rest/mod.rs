//! The management REST API, `/api/v1/workspaces/{workspace}/…` (JSON): keys (masked), chatbots,
//! API tokens and usage, with its OpenAPI 3.1 document at `/api/v1/openapi.json`.
//!
//! Two ways in, one check each:
//! * a workspace API token with the `management` scope (`Authorization: Bearer kw_…` or
//!   `x-api-key`), which acts in its own workspace with an admin's rights — it manages chatbots
//!   and tokens and reads keys and usage, but never adds or removes provider keys;
//! * a browser session (cookie) plus the CSRF proof on every state-changing request, with the
//!   member's own role.
//!
//! Either way the one guard ([`Caller::access`], asking [`keyward::policy::can`]) decides, and
//! the handlers call the same services as the dashboard's server functions. The routes and the document are built from one
//! table ([`endpoints`]), so they cannot drift apart.

mod openapi;

use crate::error::ApiError;
use crate::identity::Access;
use crate::identity::Caller;
use crate::services::{api_tokens, chatbots, keys, limits, usage};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use keyward::ids::{ChatbotId, KeyId, TokenId, WorkspaceId};
use keyward::policy::{Action, can};
use keyward::tokens::NewApiToken;
use serde::Deserialize;
use serde_json::{Value, json};

/// The caller, through the one guard: allowed to do `action` in the workspace the path names.
async fn access(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    action: Action,
) -> Result<Access, ApiError> {
    let ws: WorkspaceId = workspace.parse()?;
    Ok(caller
        .access(&state.db, &state.tokens, ws.0, action)
        .await?)
}

/// A JSON body. A field the operation does not take is refused with 422 naming it (no mass
/// assignment); other faults are 400.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix("unknown field ") {
            Some(rest) => {
                let field = rest.split(',').next().unwrap_or(rest);
                ApiError::Unprocessable(format!("unknown field {field}"))
            }
            None => ApiError::BadRequest(format!("invalid body: {text}")),
        }
    })
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

// --- keys ----------------------------------------------------------------------------------

async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = access(&state, &caller, &ws, Action::ViewKeys).await?;
    let page = keys::page(
        &state.db,
        keys::Scope::Workspace(a.workspace.id),
        can(a.actor, Action::ManageKeys),
    )
    .await?;
    let keys: Vec<_> = page.rows.into_iter().filter_map(|r| r.key).collect();
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    provider: String,
    key: String,
    #[serde(default)]
    default_model: String,
    #[serde(default)]
    base_url: String,
}

async fn add_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let a = access(&state, &caller, &ws, Action::ManageKeys).await?;
    let b: NewKeyBody = body(&bytes)?;
    state.key_test(Some(a.workspace.id))?;
    let view = keys::add(
        state.key_deps(),
        &a.by,
        keys::Scope::Workspace(a.workspace.id),
        keys::NewKey {
            provider: b.provider,
            key: secrecy::SecretString::from(b.key),
            default_model: b.default_model,
            base_url: b.base_url,
        },
    )
    .await?;
    Ok(created(json!(view)))
}

async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let a = access(&state, &caller, &ws, Action::ManageKeys).await?;
    keys::delete(
        &state.db,
        &state.changes,
        &a.by,
        keys::Scope::Workspace(a.workspace.id),
        key.parse::<KeyId>()?.0,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- chatbots ------------------------------------------------------------------------------

async fn list_chatbots(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = access(&state, &caller, &ws, Action::ViewKeys).await?;
    let rows = chatbots::list(&state.db, a.workspace.id).await?;
    let list: Vec<_> = rows.iter().map(chatbots::view).collect();
    Ok(Json(json!({ "chatbots": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChatbotBody {
    name: String,
    provider: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    system_prompt: String,
    #[serde(default)]
    greeting: String,
    #[serde(default)]
    public: bool,
}

async fn create_chatbot(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let a = access(&state, &caller, &ws, Action::ManageChatbots).await?;
    let b: NewChatbotBody = body(&bytes)?;
    let row = chatbots::create(
        &state.db,
        &a.by,
        a.workspace.id,
        chatbots::NewChatbot {
            name: b.name,
            provider: b.provider,
            model: b.model,
            system_prompt: b.system_prompt,
            greeting: b.greeting,
            public: b.public,
        },
    )
    .await?;
    Ok(created(json!(chatbots::view(&row))))
}

async fn delete_chatbot(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, bot)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let a = access(&state, &caller, &ws, Action::ManageChatbots).await?;
    let keys = keyward::policy::can(a.actor, Action::ManageKeys);
    chatbots::delete(
        &state.db,
        &state.changes,
        &a.by,
        a.workspace.id,
        bot.parse::<ChatbotId>()?.0,
        keys,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- tokens --------------------------------------------------------------------------------

async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = access(&state, &caller, &ws, Action::ViewKeys).await?;
    let tokens = api_tokens::list(&state.db, a.workspace.id).await?;
    Ok(Json(json!({ "tokens": tokens })))
}

async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let a = access(&state, &caller, &ws, Action::ManageApiTokens).await?;
    let new: NewApiToken = body(&bytes)?;
    let new: api_tokens::NewToken = new.try_into()?;
    let parent = a.token.as_deref();
    let (view, token) = api_tokens::create(&state.db, &a.by, a.workspace.id, new, parent).await?;
    Ok(created(json!(keyward::tokens::CreatedApiToken {
        token: token.to_string(),
        view,
    })))
}

async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, token)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let a = access(&state, &caller, &ws, Action::ManageApiTokens).await?;
    api_tokens::revoke(
        &state.db,
        &state.changes,
        &a.by,
        a.workspace.id,
        token.parse::<TokenId>()?.0,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- limits --------------------------------------------------------------------------------

/// A scope's limits as the REST API takes them: flat, every field optional (absent or null: no
/// such limit); a budget in micro-credits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    budget_micro: Option<i64>,
    window: Option<keyward::limits::Window>,
    alert_percent: Option<u8>,
    requests_per_minute: Option<u32>,
    input_tokens_per_minute: Option<u64>,
    output_tokens_per_minute: Option<u64>,
    concurrent: Option<u32>,
    on_store_error: Option<keyward::limits::OnStoreError>,
}

impl LimitsBody {
    fn limits(self) -> keyward::limits::Limits {
        use keyward::limits::{Budget, DEFAULT_ALERT_PERCENT, Limits, Window};
        Limits {
            budget: self.budget_micro.map(|micro| Budget {
                micro,
                window: self.window.unwrap_or(Window::Month),
                alert_percent: self.alert_percent.unwrap_or(DEFAULT_ALERT_PERCENT),
            }),
            requests_per_minute: self.requests_per_minute,
            input_tokens_per_minute: self.input_tokens_per_minute,
            output_tokens_per_minute: self.output_tokens_per_minute,
            concurrent: self.concurrent,
            on_store_error: self.on_store_error.unwrap_or_default(),
        }
    }
}

async fn get_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = access(&state, &caller, &ws, Action::ViewUsage).await?;
    let editable = limits::Editable {
        owner: can(a.actor, Action::ManageKeys),
        tokens: can(a.actor, Action::ManageApiTokens),
    };
    let page = limits::page(&state.db, state.chat.spend(), &a.workspace, editable).await?;
    Ok(Json(json!(page)))
}

/// The scope a path names, with the action that may change it.
async fn limits_target(
    state: &AppState,
    caller: &Caller,
    ws: &str,
    scope: &str,
    subject: &str,
) -> Result<(Access, limits::Target), ApiError> {
    use keyward::limits::ScopeKind;
    let kind = ScopeKind::parse(scope).ok_or(ApiError::NotFound)?;
    let action = match kind {
        ScopeKind::Token => Action::ManageApiTokens,
        _ => Action::ManageKeys,
    };
    let a = access(state, caller, ws, action).await?;
    let target = limits::target_in(&state.db, &a.workspace, kind, subject).await?;
    Ok((a, target))
}

async fn put_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, scope, subject)): Path<(String, String, String)>,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let (a, target) = limits_target(&state, &caller, &ws, &scope, &subject).await?;
    let b: LimitsBody = body(&bytes)?;
    limits::set(&state.db, &state.changes, &a.by, &target, Some(b.limits())).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, scope, subject)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (a, target) = limits_target(&state, &caller, &ws, &scope, &subject).await?;
    limits::set(&state.db, &state.changes, &a.by, &target, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- usage ---------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Range {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

async fn get_usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    query: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    // A malformed query is answered in this API's JSON error shape, not axum's plain text.
    let Query(r) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
    let a = access(&state, &caller, &ws, Action::ViewUsage).await?;
    let report = usage::report(
        &state.db,
        &state.credits,
        Some(&a.workspace),
        &r.from,
        &r.to,
    )
    .await?;
    Ok(Json(json!(report)))
}

async fn document() -> Json<Value> {
    Json(openapi::document(&endpoints()))
}

/// One operation of the API: its route, and what the document says of it.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Component schema of the JSON body, if any.
    pub request: Option<&'static str>,
    /// Status and component schema of the answer (`None`: no body).
    pub response: (u16, Option<&'static str>),
    pub query: &'static [&'static str],
    route: fn() -> MethodRouter<AppState>,
}

/// Every operation, in the document's order.
pub fn endpoints() -> Vec<Endpoint> {
    let e = |method, path, id, summary, tag, request, response, route| Endpoint {
        method,
        path,
        id,
        summary,
        tag,
        request,
        response,
        query: &[],
        route,
    };
    vec![
        e(
            "get",
            "/api/v1/workspaces/{workspace}/keys",
            "listKeys",
            "The workspace's provider keys, masked (never a plaintext key).",
            "keys",
            None,
            (200, Some("KeyList")),
            || get(list_keys),
        ),
        e(
            "post",
            "/api/v1/workspaces/{workspace}/keys",
            "addKey",
            "Adds the workspace's key for a provider, after testing it (owners, by session).",
            "keys",
            Some("NewKey"),
            (201, Some("Key")),
            || post(add_key),
        ),
        e(
            "delete",
            "/api/v1/workspaces/{workspace}/keys/{id}",
            "deleteKey",
            "Deletes a key (owners, by session).",
            "keys",
            None,
            (204, None),
            || delete(delete_key),
        ),
        e(
            "get",
            "/api/v1/workspaces/{workspace}/chatbots",
            "listChatbots",
            "The workspace's chatbots.",
            "chatbots",
            None,
            (200, Some("ChatbotList")),
            || get(list_chatbots),
        ),
        e(
            "post",
            "/api/v1/workspaces/{workspace}/chatbots",
            "createChatbot",
            "Creates a chatbot.",
            "chatbots",
            Some("NewChatbot"),
            (201, Some("Chatbot")),
            || post(create_chatbot),
        ),
        e(
            "delete",
            "/api/v1/workspaces/{workspace}/chatbots/{id}",
            "deleteChatbot",
            "Deletes a chatbot with its own keys and the tokens bound to it.",
            "chatbots",
            None,
            (204, None),
            || delete(delete_chatbot),
        ),
        e(
            "get",
            "/api/v1/workspaces/{workspace}/tokens",
            "listTokens",
            "The workspace's API tokens (never a token, only its first characters).",
            "tokens",
            None,
            (200, Some("TokenList")),
            || get(list_tokens),
        ),
        e(
            "post",
            "/api/v1/workspaces/{workspace}/tokens",
            "createToken",
            "Creates an API token; the answer holds it, shown this once.",
            "tokens",
            Some("NewToken"),
            (201, Some("CreatedToken")),
            || post(create_token),
        ),
        e(
            "delete",
            "/api/v1/workspaces/{workspace}/tokens/{id}",
            "revokeToken",
            "Revokes a token; it stops working at once.",
            "tokens",
            None,
            (204, None),
            || delete(revoke_token),
        ),
        e(
            "get",
            "/api/v1/workspaces/{workspace}/limits",
            "getLimits",
            "Every scope of the workspace (plan, workspace, chatbots, API tokens, keys) with its limits and live consumption, and the last week's refusals by limit.",
            "limits",
            None,
            (200, Some("LimitsPage")),
            || get(get_limits),
        ),
        e(
            "put",
            "/api/v1/workspaces/{workspace}/limits/{scope}/{subject}",
            "setLimits",
            "Sets the limits of one scope: `workspace` (subject: the workspace id), `chatbot`, `token` or `key` (subject: its id). Owners set workspace, chatbot and key limits; owners, admins and management tokens set token limits. A field left out is no limit.",
            "limits",
            Some("Limits"),
            (204, None),
            || put(put_limits),
        ),
        e(
            "delete",
            "/api/v1/workspaces/{workspace}/limits/{scope}/{subject}",
            "clearLimits",
            "Removes every limit of one scope.",
            "limits",
            None,
            (204, None),
            || delete(delete_limits),
        ),
        Endpoint {
            query: &["from", "to"],
            ..e(
                "get",
                "/api/v1/workspaces/{workspace}/usage",
                "getUsage",
                "Usage and credits over a date range (UTC days, default the last 30).",
                "usage",
                None,
                (200, Some("UsageReport")),
                || get(get_usage),
            )
        },
    ]
}

pub fn router() -> Router<AppState> {
    let mut r = Router::new().route("/api/v1/openapi.json", get(document));
    for e in endpoints() {
        r = r.route(e.path, (e.route)());
    }
    r.route_layer(axum::middleware::from_fn(
        crate::routes::csrf::csrf_guard_for_sessions,
    ))
}
