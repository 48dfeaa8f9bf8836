//! One chat request through the gateway: resolve the key from the cache (no database read and no
//! decryption when warm), call the provider, and apply the failure rules — record an auth or
//! quota failure on the key, retry once where it is safe (nothing sent to the caller yet, a
//! transient failure), and under `fallback_to_platform` retry a failed BYOK key once with the
//! platform key. The playground and the public API both call [`chat`].

use crate::error::ServiceError;
use crate::gateway::Gateway;
use crate::gateway::cache::{KeyCache, LiveKey};
use crate::gateway::chat::{ChatReply, Upstream, UpstreamError};
use crate::services::credits::CreditBook;
use crate::services::keys as key_service;
use crate::vault::Vault;
use keyward::keys::ErrorClass;
use keyward::resolve::{KeySource, ResolveError};
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Pause before the one retry of a transient failure.
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What the caller asks for. The destination is never part of it: the key decides.
pub struct ChatCall {
    pub workspace: Uuid,
    pub chatbot: Option<Uuid>,
    pub provider: String,
    /// `None`: the key's or the provider's default model.
    pub model: Option<String>,
    /// OpenAI-shaped chat request (messages, temperature, …); `model` and `stream` in it are
    /// ignored in favour of the fields here.
    pub request: Map<String, Value>,
    pub stream: bool,
}

pub struct ChatOutcome {
    pub source: KeySource,
    /// The key that served the request; the request holds it until it ends.
    pub key: Arc<LiveKey>,
    pub model: String,
    pub reply: ChatReply,
    /// Set when the BYOK key failed with this class and the platform key served instead.
    pub fell_back: Option<ErrorClass>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The platform key would serve the request and the workspace has no credits left.
    #[error("this workspace has no credits left for platform keys")]
    NoCredits,
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl ChatError {
    /// The class a usage record and a member's error show: an [`ErrorClass`] or `no_key`,
    /// `no_model`, `no_credits`, `internal`.
    pub fn class(&self) -> &'static str {
        match self {
            ChatError::Upstream(u) => u.class.as_str(),
            ChatError::Resolve(ResolveError::NoKey { .. }) => "no_key",
            ChatError::Resolve(ResolveError::NoModel { .. }) => "no_model",
            ChatError::NoCredits => "no_credits",
            ChatError::Service(_) => "internal",
        }
    }
}

fn records_on_key(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::InvalidKey | ErrorClass::NoQuota)
}

async fn attempt(
    gateway: &Gateway,
    key: &LiveKey,
    call: &ChatCall,
    model: &str,
) -> Result<ChatReply, UpstreamError> {
    let up = Upstream {
        wire: key.wire,
        base_url: &key.base_url,
        key: &key.secret,
    };
    match gateway.chat(&up, &call.request, model, call.stream).await {
        Err(e) if e.retryable => {
            tokio::time::sleep(RETRY_PAUSE).await;
            gateway.chat(&up, &call.request, model, call.stream).await
        }
        other => other,
    }
}

/// Records a provider's refusal of a stored key on its row, off the request's path.
fn record_failure(db: &DatabaseConnection, key: &LiveKey, e: &UpstreamError) {
    if !records_on_key(e.class) {
        return;
    }
    let (db, id, class, message) = (db.clone(), key.id, e.class, e.message.clone());
    tokio::spawn(async move {
        if let Err(err) = key_service::record_key_error(&db, id, class, &message).await {
            tracing::warn!(credential = %id, error = %err, "could not record a key's last error");
        }
    });
}

/// The key a request was sent with (for its usage record), also when it failed.
#[derive(Clone, Debug)]
pub struct Served {
    pub source: KeySource,
    pub key_id: Uuid,
    pub hint: String,
    pub model: String,
    pub fell_back: bool,
    /// Time spent waiting on the provider until its answer (or its stream's headers) arrived,
    /// retries included: the rest of a request's time is Keyward's own.
    pub upstream: Duration,
}

impl Served {
    fn of(source: KeySource, key: &LiveKey, model: &str, fell_back: bool) -> Self {
        Served {
            source,
            key_id: key.id,
            hint: key.hint.clone(),
            model: model.to_string(),
            fell_back,
            upstream: Duration::ZERO,
        }
    }
}

/// Everything [`chat`] needs from the application.
pub struct Deps<'a> {
    pub db: &'a DatabaseConnection,
    pub vault: &'a Vault,
    pub gateway: &'a Gateway,
    pub cache: &'a KeyCache,
    pub credits: &'a CreditBook,
}

impl<'a> Deps<'a> {
    pub fn of(state: &'a crate::state::AppState) -> Self {
        Deps {
            db: &state.db,
            vault: &state.vault,
            gateway: &state.gateway,
            cache: &state.keys,
            credits: &state.credits,
        }
    }
}

/// Refuses platform-key traffic of a workspace without credits (a map lookup when warm).
async fn check_credits(deps: &Deps<'_>, workspace: Uuid) -> Result<(), ChatError> {
    let balance = deps.credits.balance(deps.db, workspace).await?;
    if keyward::usage::refused_for_credits(KeySource::Platform, balance) {
        return Err(ChatError::NoCredits);
    }
    Ok(())
}

pub async fn chat(deps: &Deps<'_>, call: ChatCall) -> Result<ChatOutcome, ChatError> {
    chat_traced(deps, call).await.0
}

/// [`chat`], also saying which key the request was sent with when it failed.
#[tracing::instrument(skip_all, fields(workspace = %call.workspace, provider = ?call.provider))]
pub async fn chat_traced(
    deps: &Deps<'_>,
    call: ChatCall,
) -> (Result<ChatOutcome, ChatError>, Option<Served>) {
    let (db, gateway) = (deps.db, deps.gateway);
    let snap = match deps.cache.snapshot(db, deps.vault, call.workspace).await {
        Ok(s) => s,
        Err(e) => return (Err(e.into()), None),
    };
    let resolved = match snap.resolve(&call.provider, call.chatbot, call.model.as_deref()) {
        Ok(r) => r,
        Err(e) => return (Err(e.into()), None),
    };
    let first = Served::of(resolved.source, &resolved.key, &resolved.model, false);
    if resolved.source == KeySource::Platform
        && let Err(e) = check_credits(deps, call.workspace).await
    {
        return (Err(e), Some(first));
    }
    let sent = std::time::Instant::now();
    let result = match attempt(gateway, &resolved.key, &call, &resolved.model).await {
        Ok(reply) => Ok(ChatOutcome {
            source: resolved.source,
            key: resolved.key,
            model: resolved.model,
            reply,
            fell_back: None,
        }),
        Err(e) => {
            record_failure(db, &resolved.key, &e);
            match resolved.fallback {
                Some(platform) if records_on_key(e.class) && !e.mid_stream => {
                    // Without credits the platform cannot stand in: the BYOK failure stands.
                    if check_credits(deps, call.workspace).await.is_err() {
                        return (
                            Err(ChatError::Upstream(e)),
                            Some(Served {
                                upstream: sent.elapsed(),
                                ..first
                            }),
                        );
                    }
                    let second = Served::of(KeySource::Platform, &platform, &resolved.model, true);
                    tracing::info!(
                        class = e.class.as_str(),
                        "BYOK key failed; falling back to the platform key"
                    );
                    match attempt(gateway, &platform, &call, &resolved.model).await {
                        Ok(reply) => Ok(ChatOutcome {
                            source: KeySource::Platform,
                            key: platform,
                            model: resolved.model,
                            reply,
                            fell_back: Some(e.class),
                        }),
                        Err(e2) => {
                            record_failure(db, &platform, &e2);
                            return (
                                Err(ChatError::Upstream(e2)),
                                Some(Served {
                                    upstream: sent.elapsed(),
                                    ..second
                                }),
                            );
                        }
                    }
                }
                _ => Err(ChatError::Upstream(e)),
            }
        }
    };
    let served = match &result {
        Ok(o) => Some(Served::of(
            o.source,
            &o.key,
            &o.model,
            o.fell_back.is_some(),
        )),
        Err(_) => Some(first),
    }
    .map(|s| Served {
        upstream: sent.elapsed(),
        ..s
    });
    (result, served)
}

/// A non-streaming chat whose usage is recorded: the answer document and which key source
/// served it. (The public API's non-streaming path; streams are metered by their reader, which
/// alone knows when they end.)
pub async fn complete_metered(
    state: &crate::state::AppState,
    call: ChatCall,
    meter: crate::services::usage::UsageMeter,
) -> Result<(Value, KeySource), ChatError> {
    complete_metered_traced(state, call, meter).await.0
}

/// [`complete_metered`], also saying which key served (and how long the provider took).
pub async fn complete_metered_traced(
    state: &crate::state::AppState,
    mut call: ChatCall,
    meter: crate::services::usage::UsageMeter,
) -> (Result<(Value, KeySource), ChatError>, Option<Served>) {
    use crate::gateway::chat::ChatReply;
    use crate::services::usage::Ending;
    use keyward::usage::Outcome;
    call.stream = false;
    let (result, served) = chat_traced(&Deps::of(state), call).await;
    let pricing = state.credits.pricing(&state.db).await.ok();
    let pricing = pricing.as_deref();
    let (record, out) = match result {
        Ok(ChatOutcome {
            reply: ChatReply::Complete { body, usage },
            source,
            ..
        }) => {
            let text = body
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let ms = u64::try_from(meter.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let rec = meter.finish(
                pricing,
                Ending {
                    served: served.as_ref(),
                    usage,
                    output: &text,
                    first_token_ms: Some(ms),
                    outcome: Outcome::Ok,
                    error_class: None,
                },
            );
            (rec, Ok((body, source)))
        }
        Ok(ChatOutcome {
            reply: ChatReply::Stream(_),
            ..
        }) => {
            return (
                Err(ChatError::Service(ServiceError::Internal(
                    "a non-streaming call returned a stream".into(),
                ))),
                served,
            );
        }
        Err(e) => {
            let class = Some(e.class().to_string());
            let rec = meter.finish(
                pricing,
                Ending {
                    served: served.as_ref(),
                    usage: None,
                    output: "",
                    first_token_ms: None,
                    outcome: Outcome::Error,
                    error_class: class,
                },
            );
            (rec, Err(e))
        }
    };
    state.usage.record(record).await;
    (out, served)
}
