//! One chat request through the gateway: resolve the key from the cache (no database read and no
//! decryption when warm), call the provider, and apply the failure rules — record an auth or
//! quota failure on the key, retry once where it is safe (nothing sent to the caller yet, a
//! transient failure), and under `fallback_to_platform` retry a failed BYOK key once with the
//! platform key. The playground and the public API both call [`chat`].

use crate::error::ServiceError;
use crate::gateway::Gateway;
use crate::gateway::cache::{KeyCache, LiveKey};
use crate::gateway::chat::{ChatReply, Upstream, UpstreamError};
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
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error(transparent)]
    Service(#[from] ServiceError),
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

#[tracing::instrument(skip_all, fields(workspace = %call.workspace, provider = %call.provider))]
pub async fn chat(
    db: &DatabaseConnection,
    vault: &Vault,
    gateway: &Gateway,
    cache: &KeyCache,
    call: ChatCall,
) -> Result<ChatOutcome, ChatError> {
    let snap = cache.snapshot(db, vault, call.workspace).await?;
    let resolved = snap.resolve(&call.provider, call.chatbot, call.model.as_deref())?;
    match attempt(gateway, &resolved.key, &call, &resolved.model).await {
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
                            Err(ChatError::Upstream(e2))
                        }
                    }
                }
                _ => Err(ChatError::Upstream(e)),
            }
        }
    }
}
