//! The lifecycle of stored keys in every scope (platform, workspace, chatbot): the keys page, add,
//! test, replace, disable/enable, default model, delete. The catalogue they are checked against is
//! [`crate::services::catalogue`]; the workspace's routing settings, [`crate::services::routing`].
//!
//! Callers authorize first (the one guard); every function here scopes its SQL by the scope's
//! owner, so another tenant's credential id answers `NotFound`. Every change writes its audit
//! entry in the same transaction. Plaintext keys arrive as `SecretString`, go to the vault or the
//! provider test and nowhere else; nothing returned here carries one.

use crate::entities::{credential, user, workspace};
use crate::error::ServiceError;
use crate::gateway::{Gateway, ssrf};
use crate::invalidation::{Change, Invalidation, Topic};
use crate::services::audit::{self, By, Event};
use crate::services::catalogue::{byok_plans, known, provider_info, providers};
use crate::services::fmt_time;
use crate::vault::{CredentialContext, Vault, VaultError};
use chrono::{DateTime, Utc};
use keyward::catalogue::{self, Provider};
use keyward::credential::{CredentialScope, mask};
use keyward::dto::{KeyErrorView, KeyRow, KeyTestResult, KeyView, KeysPage, ProviderInfo};
use keyward::keys::{
    self as domain, ErrorClass, FailurePolicy, KeyStatus, byok_allowed, key_state,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, Set,
};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use uuid::Uuid;

/// Whose keys: the platform's, a workspace's, or one chatbot's (within its workspace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Platform,
    Workspace(Uuid),
    Chatbot { workspace: Uuid, chatbot: Uuid },
}

impl Scope {
    pub fn workspace_id(self) -> Option<Uuid> {
        match self {
            Scope::Platform => None,
            Scope::Workspace(w) | Scope::Chatbot { workspace: w, .. } => Some(w),
        }
    }

    pub fn kind(self) -> CredentialScope {
        match self {
            Scope::Platform => CredentialScope::Platform,
            Scope::Workspace(_) => CredentialScope::Workspace,
            Scope::Chatbot { .. } => CredentialScope::Chatbot,
        }
    }

    /// The scope owner's id as stored (nil for the platform).
    pub fn owner_id(self) -> Uuid {
        match self {
            Scope::Platform => Uuid::nil(),
            Scope::Workspace(w) => w,
            Scope::Chatbot { chatbot, .. } => chatbot,
        }
    }

    /// The change a key of this scope makes: a platform key serves every workspace.
    fn change(self) -> Change {
        match self.workspace_id() {
            Some(w) => Change::workspace(Topic::Keys, w),
            None => Change::everyone(Topic::Keys),
        }
    }

    fn condition(self) -> sea_orm::Condition {
        let c = sea_orm::Condition::all()
            .add(credential::Column::Scope.eq(self.kind().as_str()))
            .add(credential::Column::OwnerId.eq(self.owner_id()));
        match self.workspace_id() {
            Some(w) => c.add(credential::Column::WorkspaceId.eq(w)),
            None => c.add(credential::Column::WorkspaceId.is_null()),
        }
    }
}

/// What storing a key touches: the database, the vault that seals it, the gateway that tests it
/// and the invalidation that tells the caches.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub db: &'a DatabaseConnection,
    pub vault: &'a Vault,
    pub gateway: &'a Gateway,
    pub changes: &'a Invalidation,
}

/// A key submitted by an owner. Not `Debug`: it holds the plaintext.
pub struct NewKey {
    pub provider: String,
    pub key: SecretString,
    /// Empty for the provider's default.
    pub default_model: String,
    /// Custom only: the owner's https base URL.
    pub base_url: String,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn vault_err(e: VaultError) -> ServiceError {
    ServiceError::Internal(format!("vault: {e}"))
}

/// Whether the workspace may use its own key for the provider right now.
async fn byok_for<C: ConnectionTrait>(
    db: &C,
    scope: Scope,
    provider: &ProviderInfo,
) -> Result<bool, ServiceError> {
    let Some(ws) = scope.workspace_id() else {
        return Ok(true);
    };
    let ws = workspace::Entity::find_by_id(ws)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let plan = ws.plan()?;
    Ok(byok_allowed(
        provider.byok_enabled,
        plan,
        &byok_plans(db).await?,
    ))
}

/// The keys page as the dashboard shows it: [`page`] for a scope the guard authorized (`None`:
/// the platform's, for a platform admin), with the workspace and whether the viewer manages.
pub async fn page_for(
    db: &DatabaseConnection,
    scope: Scope,
    ok: Option<&crate::auth::Authorized>,
) -> Result<KeysPage, ServiceError> {
    use keyward::policy::{Action, can};
    let can_manage = ok.is_none_or(|ok| can(ok.actor, Action::ManageKeys));
    let mut page = page(db, scope, can_manage).await?;
    page.workspace = ok
        .map(|ok| crate::services::workspaces::summary(&ok.workspace, ok.actor.role))
        .transpose()?;
    Ok(page)
}

/// The keys page of a scope: every provider of the catalogue with this scope's key, if any.
pub async fn page(
    db: &DatabaseConnection,
    scope: Scope,
    can_manage: bool,
) -> Result<KeysPage, ServiceError> {
    let providers = providers(db).await?;
    let (plan, failure_policy) = match scope.workspace_id() {
        Some(ws) => {
            let ws = workspace::Entity::find_by_id(ws)
                .one(db)
                .await?
                .ok_or(ServiceError::NotFound)?;
            (Some(ws.plan()?), ws.failure_policy()?)
        }
        None => (None, FailurePolicy::default()),
    };
    let plans = byok_plans(db).await?;
    let plan_allows_byok = plan.is_none_or(|p| plans.contains(&p));
    let rows = credential::Entity::find()
        .filter(scope.condition())
        .all(db)
        .await?;
    let creators: Vec<Uuid> = rows.iter().filter_map(|r| r.created_by).collect();
    let names: HashMap<Uuid, String> = if creators.is_empty() {
        HashMap::new()
    } else {
        user::Entity::find()
            .filter(user::Column::Id.is_in(creators))
            .all(db)
            .await?
            .into_iter()
            .map(|u| (u.id, u.email))
            .collect()
    };
    let mut by_provider: HashMap<String, credential::Model> =
        rows.into_iter().map(|r| (r.provider.clone(), r)).collect();
    let rows = providers
        .into_iter()
        .map(|p| {
            let allowed = plan.is_none_or(|plan| byok_allowed(p.byok_enabled, plan, &plans));
            let key = by_provider
                .remove(&p.id)
                .map(|row| view(&row, allowed, &names))
                .transpose()?;
            Ok(KeyRow {
                provider: p,
                key,
                byok_allowed: allowed,
            })
        })
        .collect::<Result<_, ServiceError>>()?;
    Ok(KeysPage {
        workspace: None,
        rows,
        can_manage,
        failure_policy,
        plan_allows_byok,
    })
}

fn view(
    row: &credential::Model,
    byok_allowed: bool,
    names: &HashMap<Uuid, String>,
) -> Result<KeyView, ServiceError> {
    let status = row.status()?;
    Ok(KeyView {
        id: row.id.to_string(),
        provider: row.provider.clone(),
        hint: row.hint.clone(),
        state: key_state(status, byok_allowed),
        default_model: row.default_model.clone(),
        base_url: (row.provider == catalogue::CUSTOM).then(|| row.base_url.clone()),
        destination: keyward::keys::destination_host(&row.base_url),
        created_by: row.created_by.and_then(|id| names.get(&id).cloned()),
        created_at: fmt_time(row.created_at),
        updated_at: fmt_time(row.updated_at),
        last_used_at: row.last_used_at.map(fmt_time),
        last_tested_at: row.last_tested_at.map(fmt_time),
        last_error: match (&row.last_error_class, row.last_error_at) {
            (Some(class), Some(at)) => class.parse().ok().map(|class| KeyErrorView {
                class,
                message: row.last_error_message.clone().unwrap_or_default(),
                at: fmt_time(at),
            }),
            _ => None,
        },
    })
}

/// Format checks shared by add, test and replace: the key's shape, the model id, and where the
/// key will be sent (the effective catalogue base URL, or the owner's SSRF-checked Custom URL).
/// Returns the provider and the base URL. Messages never quote the key.
async fn prepare<C: ConnectionTrait>(
    db: &C,
    gateway: &Gateway,
    provider_id: &str,
    key: &SecretString,
    base_url: &str,
) -> Result<(&'static Provider, ProviderInfo, String), ServiceError> {
    let (p, info) = provider_info(db, provider_id).await?;
    catalogue::check_key_shape(p.id, key.expose_secret())
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let url = match &info.base_url {
        Some(url) => url.clone(),
        None => {
            if base_url.trim().is_empty() {
                return Err(ServiceError::Invalid(
                    "a Custom provider needs its base URL, e.g. https://llm.example.com/v1".into(),
                ));
            }
            ssrf::check_base_url(base_url, gateway.allowlist())
                .map_err(|e| ServiceError::Invalid(e.to_string()))?
        }
    };
    Ok((p, info, url))
}

/// Tests a key that has not been saved: format check, then a live call. Nothing is stored.
pub async fn test_unsaved(
    db: &DatabaseConnection,
    gateway: &Gateway,
    provider_id: &str,
    key: &SecretString,
    base_url: &str,
) -> Result<KeyTestResult, ServiceError> {
    let (p, _, url) = prepare(db, gateway, provider_id, key, base_url).await?;
    Ok(gateway.test_key(p.wire, &url, key).await)
}

/// A key sealed for its row, with the write transaction that stores it.
struct Sealed {
    txn: DatabaseTransaction,
    blob: Vec<u8>,
    key_id: i32,
    hint: String,
    at: DateTime<Utc>,
}

/// Opens the write transaction and seals `key` for the row `credential_id` of `scope` (bound to
/// its provider and base URL); the plaintext is dropped here, only its masked hint is kept.
async fn seal(
    db: &DatabaseConnection,
    vault: &Vault,
    scope: Scope,
    credential_id: Uuid,
    provider: &str,
    base_url: &str,
    key: SecretString,
) -> Result<Sealed, ServiceError> {
    let ctx = CredentialContext {
        credential_id,
        workspace_id: scope.workspace_id(),
        scope: scope.kind(),
        owner_id: scope.owner_id(),
        provider: provider.into(),
        base_url: base_url.into(),
    };
    let hint = mask(key.expose_secret());
    let txn = crate::db::begin_write(db).await?;
    let (blob, key_id) = vault
        .encrypt_for_write(&txn, &ctx, &key)
        .await
        .map_err(vault_err)?;
    drop(key);
    let key_id = i32::try_from(key_id).map_err(|_| vault_err(VaultError::Damaged("key id")))?;
    Ok(Sealed {
        txn,
        blob,
        key_id,
        hint,
        at: now(),
    })
}

fn trimmed(key: &SecretString) -> SecretString {
    SecretString::from(key.expose_secret().trim())
}

/// Adds this scope's key for a provider (one per provider per scope).
#[tracing::instrument(skip_all, fields(provider = ?new.provider))]
pub async fn add(
    deps: Deps<'_>,
    by: &By,
    scope: Scope,
    new: NewKey,
) -> Result<KeyView, ServiceError> {
    let Deps {
        db,
        vault,
        gateway,
        changes,
    } = deps;
    let key = trimmed(&new.key);
    let (p, info, base_url) = prepare(db, gateway, &new.provider, &key, &new.base_url).await?;
    let default_model =
        domain::parse_model(&new.default_model).map_err(|m| ServiceError::Invalid(m.into()))?;
    let id = Uuid::new_v4();
    let sealed = seal(db, vault, scope, id, p.id, &base_url, key).await?;
    let (txn, hint, at) = (sealed.txn, sealed.hint, sealed.at);
    let exists = credential::Entity::find()
        .filter(scope.condition())
        .filter(credential::Column::Provider.eq(p.id))
        .one(&txn)
        .await?
        .is_some();
    if exists {
        return Err(ServiceError::Conflict(format!(
            "there is already a {} key here: replace it instead",
            p.name
        )));
    }
    let row = credential::ActiveModel {
        id: Set(id),
        workspace_id: Set(scope.workspace_id()),
        scope: Set(scope.kind().as_str().into()),
        owner_id: Set(scope.owner_id()),
        provider: Set(p.id.into()),
        base_url: Set(base_url),
        key_id: Set(sealed.key_id),
        ciphertext: Set(sealed.blob),
        hint: Set(hint.clone()),
        status: Set(KeyStatus::Active.as_str().into()),
        default_model: Set(default_model),
        created_by: Set(by.id),
        created_at: Set(at),
        updated_at: Set(at),
        last_used_at: Set(None),
        last_tested_at: Set(None),
        last_error_class: Set(None),
        last_error_message: Set(None),
        last_error_at: Set(None),
    };
    let row = row.insert(&txn).await.map_err(|e| match e {
        e if is_unique_violation(&e) => ServiceError::Conflict(format!(
            "there is already a {} key here: replace it instead",
            p.name
        )),
        e => ServiceError::Database(e),
    })?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: scope.workspace_id(),
            action: "key.created",
            provider: Some(p.id),
            hint: Some(&hint),
            detail: Some(format!("{} key", scope.kind())),
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(scope.change());
    let names = by.id.map(|id| (id, by.email.clone())).into_iter().collect();
    let allowed = byok_for(db, scope, &info).await?;
    view(&row, allowed, &names)
}

fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

async fn load(
    db: &impl ConnectionTrait,
    scope: Scope,
    credential_id: Uuid,
) -> Result<credential::Model, ServiceError> {
    credential::Entity::find_by_id(credential_id)
        .filter(scope.condition())
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// Tests a stored key live and records the outcome on its row (last tested, last error).
pub async fn test_saved(
    deps: Deps<'_>,
    by: &By,
    scope: Scope,
    credential_id: Uuid,
) -> Result<KeyTestResult, ServiceError> {
    let Deps {
        db, vault, gateway, ..
    } = deps;
    let row = load(db, scope, credential_id).await?;
    let p = known(&row.provider)?;
    let ctx = crate::vault::context_of(&row).map_err(vault_err)?;
    let key = vault
        .decrypt(&ctx, &row.ciphertext)
        .await
        .map_err(vault_err)?;
    let result = gateway.test_key(p.wire, &row.base_url, &key).await;
    drop(key);
    let at = now();
    let txn = crate::db::begin_write(db).await?;
    let mut am: credential::ActiveModel = load(&txn, scope, credential_id).await?.into();
    am.last_tested_at = Set(Some(at));
    if let Some(class) = result.class {
        record_error(&mut am, class, &result.message, at);
    } else {
        am.last_error_class = Set(None);
        am.last_error_message = Set(None);
        am.last_error_at = Set(None);
    }
    am.update(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: scope.workspace_id(),
            action: "key.tested",
            provider: Some(p.id),
            hint: Some(&row.hint),
            detail: Some(match result.class {
                None => format!("ok in {} ms", result.latency_ms),
                Some(c) => format!("failed: {}", c.as_str()),
            }),
        },
    )
    .await?;
    txn.commit().await?;
    // Only the row's test columns changed: cached resolutions stay valid.
    Ok(result)
}

fn record_error(
    am: &mut credential::ActiveModel,
    class: ErrorClass,
    message: &str,
    at: DateTime<Utc>,
) {
    am.last_error_class = Set(Some(class.as_str().into()));
    am.last_error_message = Set(Some(message.chars().take(300).collect()));
    am.last_error_at = Set(Some(at));
}

/// Records a provider failure of a stored key (the gateway calls this on auth and quota errors).
pub async fn record_key_error(
    db: &DatabaseConnection,
    credential_id: Uuid,
    class: ErrorClass,
    message: &str,
) -> Result<(), ServiceError> {
    if let Some(row) = credential::Entity::find_by_id(credential_id)
        .one(db)
        .await?
    {
        let mut am: credential::ActiveModel = row.into();
        record_error(&mut am, class, message, now());
        am.update(db).await?;
    }
    Ok(())
}

/// Replaces a stored key. The new key is format-checked and live-tested first; if the provider
/// does not accept it, nothing changes and the old key stays in use. The swap itself is one
/// update of the row: a request that already holds the old key finishes on it, the next one
/// reads the new one. For Custom, the base URL may change here (the key is given again).
#[tracing::instrument(skip_all)]
pub async fn replace(
    deps: Deps<'_>,
    by: &By,
    scope: Scope,
    credential_id: Uuid,
    new: NewKey,
) -> Result<KeyTestResult, ServiceError> {
    let Deps {
        db,
        vault,
        gateway,
        changes,
    } = deps;
    let old = load(db, scope, credential_id).await?;
    if new.provider != old.provider {
        return Err(ServiceError::Invalid(
            "a key can only be replaced by a key for the same provider".into(),
        ));
    }
    let key = trimmed(&new.key);
    let (p, _, base_url) = prepare(db, gateway, &old.provider, &key, &new.base_url).await?;
    let default_model = match new.default_model.trim() {
        "" => old.default_model.clone(),
        m => domain::parse_model(m).map_err(|m| ServiceError::Invalid(m.into()))?,
    };
    let tested = gateway.test_key(p.wire, &base_url, &key).await;
    if !tested.ok {
        let hint = mask(key.expose_secret());
        drop(key);
        audit::record(
            db,
            by,
            Event {
                workspace_id: scope.workspace_id(),
                action: "key.replace_refused",
                provider: Some(p.id),
                hint: Some(&hint),
                detail: Some(format!(
                    "the new key failed its test ({}); the old key {} stays active",
                    tested.class.map_or("unknown", ErrorClass::as_str),
                    old.hint
                )),
            },
        )
        .await?;
        return Err(ServiceError::Invalid(format!(
            "the new key was not saved: {}. The old key stays in use.",
            tested.message
        )));
    }
    let sealed = seal(db, vault, scope, credential_id, p.id, &base_url, key).await?;
    let (txn, hint, at) = (sealed.txn, sealed.hint, sealed.at);
    let current = load(&txn, scope, credential_id).await?;
    let mut am: credential::ActiveModel = current.into();
    am.base_url = Set(base_url);
    am.key_id = Set(sealed.key_id);
    am.ciphertext = Set(sealed.blob);
    am.hint = Set(hint.clone());
    am.default_model = Set(default_model);
    am.updated_at = Set(at);
    am.last_tested_at = Set(Some(at));
    am.last_error_class = Set(None);
    am.last_error_message = Set(None);
    am.last_error_at = Set(None);
    am.update(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: scope.workspace_id(),
            action: "key.replaced",
            provider: Some(p.id),
            hint: Some(&hint),
            detail: Some(format!("replaces {}", old.hint)),
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(scope.change());
    Ok(tested)
}

/// Disables or enables a stored key. A disabled key is kept but never used.
pub async fn set_enabled(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    scope: Scope,
    credential_id: Uuid,
    enabled: bool,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let row = load(&txn, scope, credential_id).await?;
    let status = if enabled {
        KeyStatus::Active
    } else {
        KeyStatus::Disabled
    };
    if row.status == status.as_str() {
        return Ok(());
    }
    let (provider, hint) = (row.provider.clone(), row.hint.clone());
    let mut am: credential::ActiveModel = row.into();
    am.status = Set(status.as_str().into());
    am.updated_at = Set(now());
    am.update(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: scope.workspace_id(),
            action: if enabled {
                "key.enabled"
            } else {
                "key.disabled"
            },
            provider: Some(&provider),
            hint: Some(&hint),
            detail: None,
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(scope.change());
    Ok(())
}

/// Changes the default model of a stored key (empty: the provider's default).
pub async fn set_default_model(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    scope: Scope,
    credential_id: Uuid,
    model: &str,
) -> Result<(), ServiceError> {
    let model = domain::parse_model(model).map_err(|m| ServiceError::Invalid(m.into()))?;
    let txn = crate::db::begin_write(db).await?;
    let row = load(&txn, scope, credential_id).await?;
    let (provider, hint) = (row.provider.clone(), row.hint.clone());
    let mut am: credential::ActiveModel = row.into();
    am.default_model = Set(model.clone());
    am.updated_at = Set(now());
    am.update(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: scope.workspace_id(),
            action: "key.model_changed",
            provider: Some(&provider),
            hint: Some(&hint),
            detail: Some(model.unwrap_or_else(|| "provider default".into())),
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(scope.change());
    Ok(())
}

/// Deletes a stored key: the row, and with it the ciphertext, is purged. The audit entry keeps
/// the provider and the masked hint.
pub async fn delete(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    scope: Scope,
    credential_id: Uuid,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let row = load(&txn, scope, credential_id).await?;
    credential::Entity::delete_by_id(row.id).exec(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: scope.workspace_id(),
            action: "key.deleted",
            provider: Some(&row.provider),
            hint: Some(&row.hint),
            detail: None,
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(scope.change());
    Ok(())
}
