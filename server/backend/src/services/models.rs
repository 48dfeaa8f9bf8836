//! Which models a workspace (or one of its chatbots) can use now: for every provider whose key
//! resolves, the provider's own model list fetched with that key (cached for [`MODELS_TTL`]),
//! merged with the default model, labelled by the key source that would serve it.

use crate::error::ServiceError;
use crate::gateway::Gateway;
use crate::gateway::cache::KeyCache;
use crate::gateway::chat::Upstream;
use crate::vault::Vault;
use keyward::catalogue::PROVIDERS;
use keyward::dto::ModelOption;
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a provider's model list is reused.
pub const MODELS_TTL: Duration = Duration::from_secs(600);

/// A stored key (id and hint: a replaced key gets a fresh list).
type KeyRef = (Uuid, String);
/// When a list was fetched, and the list.
type Entry = (Instant, Arc<Vec<String>>);

/// Model lists per stored key (a replaced key gets a new list: the entry is keyed by the key's
/// hint too).
#[derive(Clone, Debug, Default)]
pub struct ModelsCache {
    lists: Arc<Mutex<HashMap<KeyRef, Entry>>>,
}

impl ModelsCache {
    fn get(&self, key: &(Uuid, String)) -> Option<Arc<Vec<String>>> {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists
            .get(key)
            .filter(|(at, _)| at.elapsed() < MODELS_TTL)
            .map(|(_, l)| l.clone())
    }

    fn put(&self, key: (Uuid, String), list: Arc<Vec<String>>) {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.retain(|_, (at, _)| at.elapsed() < MODELS_TTL);
        lists.insert(key, (Instant::now(), list));
    }
}

pub async fn available(
    db: &DatabaseConnection,
    vault: &Vault,
    gateway: &Gateway,
    keys: &KeyCache,
    models: &ModelsCache,
    workspace: Uuid,
    chatbot: Option<Uuid>,
) -> Result<Vec<ModelOption>, ServiceError> {
    let snap = keys.snapshot(db, vault, workspace).await?;
    let mut out = Vec::new();
    for p in PROVIDERS {
        let Ok(resolved) = snap.resolve(p.id, chatbot, None) else {
            continue;
        };
        let cache_key = (resolved.key.id, resolved.key.hint.clone());
        let list = match models.get(&cache_key) {
            Some(list) => list,
            None => {
                let up = Upstream {
                    wire: resolved.key.wire,
                    base_url: &resolved.key.base_url,
                    key: &resolved.key.secret,
                };
                match gateway.list_models(&up).await {
                    Ok(list) => {
                        let list = Arc::new(list);
                        models.put(cache_key, list.clone());
                        list
                    }
                    Err(e) => {
                        // The default model still works (or fails visibly when used).
                        tracing::warn!(
                            provider = p.id,
                            class = e.class.as_str(),
                            "cannot list models"
                        );
                        Arc::new(Vec::new())
                    }
                }
            }
        };
        out.push(ModelOption {
            provider: p.id.into(),
            model: resolved.model.clone(),
            source: resolved.source,
            default: true,
        });
        out.extend(
            list.iter()
                .filter(|m| **m != resolved.model)
                .map(|m| ModelOption {
                    provider: p.id.into(),
                    model: m.clone(),
                    source: resolved.source,
                    default: false,
                }),
        );
    }
    Ok(out)
}
