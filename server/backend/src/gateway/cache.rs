//! The key cache: per workspace, the decrypted keys (workspace, its chatbots', the platform's)
//! and the policy inputs of the resolution chain, so a warm request does no database read and no
//! decryption.
//!
//! Invalidation goes through the instance's [`Invalidation`]: every key, BYOK, plan or policy
//! change publishes a [`Topic::Keys`] change after its transaction commits (for its workspace, or
//! for everyone when it is a platform key or setting); a snapshot loaded before that change is
//! reloaded on its next use, and other workspaces' snapshots stay warm. A
//! request keeps the `Arc<LiveKey>` it resolved until it finishes, so a replacement only affects
//! later requests. A snapshot is also reloaded once it is [`SNAPSHOT_MAX_AGE`] old, which bounds
//! how long another instance on the same PostgreSQL keeps using a key changed elsewhere.

use crate::entities::{credential, workspace};
use crate::error::ServiceError;
use crate::invalidation::{Invalidation, Seen, Topic};
use crate::services::catalogue as provider_settings;
use crate::vault::Vault;
use keyward::catalogue::{self, WireFormat};
use keyward::credential::CredentialScope;
use keyward::dto::ProviderInfo;
use keyward::keys::{FailurePolicy, KeyStatus};
use keyward::limits::{Limits, Scope, ScopeKind};
use keyward::policy::Plan;
use keyward::resolve::{Candidate, Inputs, ResolveError, Resolved, resolve};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// Longest a snapshot is used without re-reading the database (changes made by *other*
/// instances reach this one within this time; this instance's own changes apply at once).
pub const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// A stored key, decrypted, with what the gateway needs to use it. Its `Debug` never shows the
/// secret.
pub struct LiveKey {
    pub id: Uuid,
    pub scope: CredentialScope,
    pub provider: String,
    pub wire: WireFormat,
    pub base_url: String,
    pub active: bool,
    pub default_model: Option<String>,
    pub hint: String,
    pub secret: SecretString,
}

impl std::fmt::Debug for LiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKey")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .field("provider", &self.provider)
            .field("hint", &self.hint)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// The limits a workspace's requests can meet (only scopes that set some), loaded with its keys.
#[derive(Debug, Default)]
pub struct ScopeLimits {
    /// The operator's override for this workspace, else its plan's default.
    pub operator: Option<Limits>,
    /// The owner's own.
    pub workspace: Option<Limits>,
    pub chatbots: HashMap<Uuid, Limits>,
    pub tokens: HashMap<Uuid, Limits>,
    /// The workspace's keys, its chatbots' and the platform's.
    pub keys: HashMap<Uuid, Limits>,
}

impl ScopeLimits {
    /// The scopes a request passes through that limit something, outermost first.
    pub fn scopes(
        &self,
        workspace: Uuid,
        chatbot: Option<Uuid>,
        token: Option<Uuid>,
        key: Uuid,
    ) -> Vec<(Scope, Limits)> {
        let mut out = Vec::new();
        if let Some(l) = self.operator {
            out.push((Scope::Operator(workspace), l));
        }
        if let Some(l) = self.workspace {
            out.push((Scope::Workspace(workspace), l));
        }
        if let Some(c) = chatbot
            && let Some(l) = self.chatbots.get(&c)
        {
            out.push((Scope::Chatbot(c), *l));
        }
        if let Some(t) = token
            && let Some(l) = self.tokens.get(&t)
        {
            out.push((Scope::Token(t), *l));
        }
        if let Some(l) = self.keys.get(&key) {
            out.push((Scope::Key(key), *l));
        }
        out
    }

    fn load(
        rows: &[crate::entities::limit::Model],
        workspace: Uuid,
        plan: Plan,
    ) -> Result<Self, ServiceError> {
        let mut out = ScopeLimits::default();
        let (mut plan_default, mut over) = (None, None);
        for row in rows {
            let Some(kind) = ScopeKind::parse(&row.scope) else {
                return Err(ServiceError::Internal(format!(
                    "limits.scope holds {:?}",
                    row.scope
                )));
            };
            let limits = crate::services::limits::of_row(row)?;
            let id = || Uuid::parse_str(&row.subject).ok();
            match kind {
                ScopeKind::Plan if row.subject == plan.as_str() => plan_default = Some(limits),
                ScopeKind::Plan => {}
                ScopeKind::Override if id() == Some(workspace) => over = Some(limits),
                ScopeKind::Override => {}
                ScopeKind::Workspace if id() == Some(workspace) => out.workspace = Some(limits),
                ScopeKind::Workspace => {}
                ScopeKind::Chatbot => {
                    out.chatbots.extend(id().map(|c| (c, limits)));
                }
                ScopeKind::Token => {
                    out.tokens.extend(id().map(|t| (t, limits)));
                }
                ScopeKind::Key => {
                    out.keys.extend(id().map(|k| (k, limits)));
                }
            }
        }
        out.operator = over.or(plan_default);
        Ok(out)
    }
}

/// Everything the resolution chain needs for one workspace.
#[derive(Debug)]
pub struct Snapshot {
    seen: Seen,
    loaded: std::time::Instant,
    pub plan_byok: bool,
    pub policy: FailurePolicy,
    /// The workspace's chosen default provider (public API, bare model ids).
    pub default_provider: Option<String>,
    pub providers: HashMap<String, ProviderInfo>,
    pub workspace_keys: HashMap<String, Arc<LiveKey>>,
    pub chatbot_keys: HashMap<(Uuid, String), Arc<LiveKey>>,
    pub platform_keys: HashMap<String, Arc<LiveKey>>,
    pub limits: ScopeLimits,
}

fn candidate(k: Option<&Arc<LiveKey>>) -> Option<Candidate<Arc<LiveKey>>> {
    k.map(|k| Candidate {
        id: k.clone(),
        active: k.active,
        default_model: k.default_model.clone(),
    })
}

impl Snapshot {
    /// Runs the resolution chain for a provider (and optionally a chatbot). Pure and in memory.
    pub fn resolve(
        &self,
        provider: &str,
        chatbot: Option<Uuid>,
        model: Option<&str>,
    ) -> Result<Resolved<Arc<LiveKey>>, ResolveError> {
        let info = self.providers.get(provider);
        let inputs = Inputs {
            provider,
            provider_byok: info.is_some_and(|p| p.byok_enabled),
            plan_byok: self.plan_byok,
            policy: self.policy,
            chatbot: chatbot
                .and_then(|c| candidate(self.chatbot_keys.get(&(c, provider.to_string())))),
            workspace: candidate(self.workspace_keys.get(provider)),
            platform: candidate(self.platform_keys.get(provider)),
            requested_model: model,
            provider_default_model: info.and_then(|p| p.default_model.as_deref()),
        };
        resolve(&inputs)
    }

    /// Where a bare model id goes: the workspace's chosen default provider; else (or when that
    /// one has no usable key) the first provider of the catalogue with a key of the chatbot or
    /// workspace; else the first one a platform key serves.
    pub fn default_provider(&self, chatbot: Option<Uuid>) -> Option<&'static str> {
        // Any model name: the question is only whether a key would serve the provider.
        let usable = |p: &str| self.resolve(p, chatbot, Some("-")).ok();
        if let Some(p) = self
            .default_provider
            .as_deref()
            .and_then(catalogue::provider)
            && usable(p.id).is_some()
        {
            return Some(p.id);
        }
        let mut platform = None;
        for p in catalogue::PROVIDERS {
            match usable(p.id) {
                Some(r) if r.source.is_byok() => return Some(p.id),
                Some(_) if platform.is_none() => platform = Some(p.id),
                _ => {}
            }
        }
        platform
    }
}

#[derive(Clone, Debug)]
pub struct KeyCache {
    snapshots: Arc<RwLock<HashMap<Uuid, Arc<Snapshot>>>>,
    loads: Arc<AtomicU64>,
    /// Concurrent misses of one workspace load it once.
    flight: Arc<crate::single_flight::SingleFlight>,
    changes: Invalidation,
}

impl KeyCache {
    pub fn new(changes: Invalidation) -> Self {
        Self {
            snapshots: Default::default(),
            loads: Default::default(),
            flight: Default::default(),
            changes,
        }
    }

    fn current(&self, workspace_id: Uuid, s: &Snapshot) -> bool {
        s.loaded.elapsed() < SNAPSHOT_MAX_AGE
            && self.changes.fresh(Topic::Keys, Some(workspace_id), s.seen)
    }

    /// How many snapshots were loaded from the database (each load reads and decrypts).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// The current snapshot if it is warm (no IO at all).
    pub fn warm(&self, workspace_id: Uuid) -> Option<Arc<Snapshot>> {
        let map = self.snapshots.read().unwrap_or_else(|p| p.into_inner());
        map.get(&workspace_id)
            .filter(|s| self.current(workspace_id, s))
            .cloned()
    }

    /// The workspace's snapshot, loading it on a miss or after a change.
    pub async fn snapshot(
        &self,
        db: &DatabaseConnection,
        vault: &Vault,
        workspace_id: Uuid,
    ) -> Result<Arc<Snapshot>, ServiceError> {
        if let Some(s) = self.warm(workspace_id) {
            return Ok(s);
        }
        let _turn = self.flight.turn(&workspace_id).await;
        if let Some(s) = self.warm(workspace_id) {
            return Ok(s);
        }
        let seen = self.changes.seen();
        let snap = Arc::new(load(db, vault, workspace_id, seen).await?);
        self.loads.fetch_add(1, Ordering::Relaxed);
        let mut map = self.snapshots.write().unwrap_or_else(|p| p.into_inner());
        // Forget stale snapshots while we hold the lock.
        map.retain(|w, s| self.current(*w, s));
        map.insert(workspace_id, snap.clone());
        Ok(snap)
    }
}

async fn load(
    db: &DatabaseConnection,
    vault: &Vault,
    workspace_id: Uuid,
    seen: Seen,
) -> Result<Snapshot, ServiceError> {
    let ws = workspace::Entity::find_by_id(workspace_id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let plan: Plan = ws.plan()?;
    let plans = provider_settings::byok_plans(db).await?;
    let providers: HashMap<String, ProviderInfo> = provider_settings::providers(db)
        .await?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let rows = credential::Entity::find()
        .filter(
            Condition::any()
                .add(credential::Column::WorkspaceId.eq(workspace_id))
                .add(credential::Column::Scope.eq(CredentialScope::Platform.as_str())),
        )
        .all(db)
        .await?;
    let limit_rows = crate::services::limits::rows_for(db, workspace_id).await?;
    let mut snap = Snapshot {
        seen,
        loaded: std::time::Instant::now(),
        plan_byok: plans.contains(&plan),
        policy: ws.failure_policy()?,
        default_provider: ws.default_provider.clone(),
        providers,
        workspace_keys: HashMap::new(),
        chatbot_keys: HashMap::new(),
        platform_keys: HashMap::new(),
        limits: ScopeLimits::load(&limit_rows, workspace_id, plan)?,
    };
    for row in rows {
        let Some(p) = catalogue::provider(&row.provider) else {
            continue;
        };
        let ctx = match crate::vault::context_of(&row) {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::error!(credential = %row.id, error = %e, "unusable credential row");
                continue;
            }
        };
        let secret = match vault.decrypt(&ctx, &row.ciphertext).await {
            Ok(s) => s,
            Err(e) => {
                // A tampered or undecryptable row is no key; the owner sees it fail its test.
                tracing::error!(credential = %row.id, error = %e, "cannot decrypt a stored key");
                continue;
            }
        };
        let key = Arc::new(LiveKey {
            id: row.id,
            scope: ctx.scope,
            provider: row.provider.clone(),
            wire: p.wire,
            base_url: row.base_url.clone(),
            active: row.status == KeyStatus::Active.as_str(),
            default_model: row.default_model.clone(),
            hint: row.hint.clone(),
            secret,
        });
        match ctx.scope {
            CredentialScope::Platform => {
                snap.platform_keys.insert(row.provider, key);
            }
            CredentialScope::Workspace => {
                snap.workspace_keys.insert(row.provider, key);
            }
            CredentialScope::Chatbot => {
                snap.chatbot_keys.insert((row.owner_id, row.provider), key);
            }
        }
    }
    Ok(snap)
}
