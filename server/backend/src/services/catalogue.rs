//! The provider catalogue as this instance uses it: the built-in defaults merged with the
//! platform admin's overrides (base URL, default model, BYOK switch), and the plans whose
//! workspaces may bring their own keys. Read by the key cache and the keys pages; changed only by
//! the platform admin, with an audit entry in the same transaction.

use crate::entities::{provider_setting, setting};
use crate::error::ServiceError;
use crate::gateway::{Gateway, ssrf};
use crate::invalidation::{Change, Invalidation, Topic};
use crate::services::audit::{self, By, Event};
use chrono::Utc;
use keyward::catalogue::{self, PROVIDERS, Provider};
use keyward::dto::{PlatformProviders, ProviderInfo};
use keyward::keys::{self as domain, DEFAULT_BYOK_PLANS};
use keyward::policy::Plan;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, Set};
use std::collections::HashMap;

/// The settings row holding the plans allowed to bring their own keys.
pub const BYOK_PLANS_SETTING: &str = "byok_plans";

pub(crate) fn known(provider_id: &str) -> Result<&'static Provider, ServiceError> {
    catalogue::provider(provider_id).ok_or_else(|| ServiceError::Invalid("unknown provider".into()))
}

fn info(p: &Provider, row: Option<&provider_setting::Model>) -> ProviderInfo {
    let base_url = row
        .and_then(|r| r.base_url.clone())
        .or(p.default_base_url.map(str::to_string));
    let default_model = row
        .and_then(|r| r.default_model.clone())
        .or(p.default_model.map(str::to_string));
    ProviderInfo {
        id: p.id.into(),
        name: p.name.into(),
        base_url: if p.id == catalogue::CUSTOM {
            None
        } else {
            base_url
        },
        default_model,
        key_url: p.key_url.map(str::to_string),
        key_shape: p.key_shape(),
        byok_enabled: row.is_none_or(|r| r.byok_enabled),
        overridden: row.is_some_and(|r| r.base_url.is_some() || r.default_model.is_some()),
    }
}

/// The catalogue as this instance uses it: defaults merged with the admin's overrides.
pub async fn providers<C: ConnectionTrait>(db: &C) -> Result<Vec<ProviderInfo>, ServiceError> {
    let rows: HashMap<String, provider_setting::Model> = provider_setting::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.provider.clone(), r))
        .collect();
    Ok(PROVIDERS.iter().map(|p| info(p, rows.get(p.id))).collect())
}

pub(crate) async fn provider_info<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<(&'static Provider, ProviderInfo), ServiceError> {
    let p = known(id)?;
    let row = provider_setting::Entity::find_by_id(id).one(db).await?;
    Ok((p, info(p, row.as_ref())))
}

/// The plans whose workspaces may bring their own keys.
pub async fn byok_plans<C: ConnectionTrait>(db: &C) -> Result<Vec<Plan>, ServiceError> {
    Ok(
        match setting::Entity::find_by_id(BYOK_PLANS_SETTING.to_string())
            .one(db)
            .await?
        {
            Some(row) => domain::plans_from_text(&row.value),
            None => DEFAULT_BYOK_PLANS.to_vec(),
        },
    )
}

pub async fn platform_providers(
    db: &DatabaseConnection,
) -> Result<PlatformProviders, ServiceError> {
    Ok(PlatformProviders {
        providers: providers(db).await?,
        byok_plans: byok_plans(db).await?,
    })
}

/// The admin's change to one provider: base URL and default model overrides (empty = catalogue
/// default) and the BYOK switch.
pub struct ProviderChange {
    pub base_url: String,
    pub default_model: String,
    pub byok_enabled: bool,
}

pub async fn update_provider(
    db: &DatabaseConnection,
    changes: &Invalidation,
    gateway: &Gateway,
    by: &By,
    provider_id: &str,
    change: ProviderChange,
) -> Result<(), ServiceError> {
    let p = known(provider_id)?;
    let base_url = match change.base_url.trim() {
        "" => None,
        _ if p.id == catalogue::CUSTOM => {
            return Err(ServiceError::Invalid(
                "Custom has no default base URL: each key brings its own".into(),
            ));
        }
        url => {
            let url = ssrf::check_base_url(url, gateway.allowlist())
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            (Some(url.as_str()) != p.default_base_url).then_some(url)
        }
    };
    let default_model = domain::parse_model(&change.default_model)
        .map_err(|m| ServiceError::Invalid(m.into()))?
        .filter(|m| Some(m.as_str()) != p.default_model);
    let txn = crate::db::begin_write(db).await?;
    let before = provider_setting::Entity::find_by_id(p.id).one(&txn).await?;
    let was_enabled = before.as_ref().is_none_or(|r| r.byok_enabled);
    let old_url = before.as_ref().and_then(|r| r.base_url.clone());
    let old_model = before.as_ref().and_then(|r| r.default_model.clone());
    let row = provider_setting::ActiveModel {
        provider: Set(p.id.into()),
        base_url: Set(base_url.clone()),
        default_model: Set(default_model.clone()),
        byok_enabled: Set(change.byok_enabled),
        updated_by: Set(by.id),
        updated_at: Set(Utc::now()),
    };
    if before.is_some() {
        row.update(&txn).await?;
    } else {
        provider_setting::Entity::insert(row)
            .exec_without_returning(&txn)
            .await?;
    }
    if was_enabled != change.byok_enabled {
        let action = if change.byok_enabled {
            "byok.enabled"
        } else {
            "byok.disabled"
        };
        audit::record(
            &txn,
            by,
            Event {
                action,
                provider: Some(p.id),
                ..Default::default()
            },
        )
        .await?;
    }
    if old_url != base_url || old_model != default_model {
        let detail = format!(
            "base URL {}, default model {}",
            base_url.as_deref().unwrap_or("(catalogue default)"),
            default_model.as_deref().unwrap_or("(catalogue default)")
        );
        audit::record(
            &txn,
            by,
            Event {
                action: "provider.updated",
                provider: Some(p.id),
                detail: Some(detail),
                ..Default::default()
            },
        )
        .await?;
    }
    txn.commit().await?;
    changes.publish(Change::everyone(Topic::Keys));
    Ok(())
}

pub async fn set_byok_plans(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    plans: &[Plan],
) -> Result<(), ServiceError> {
    let value = domain::plans_to_text(plans);
    let txn = crate::db::begin_write(db).await?;
    let existing = setting::Entity::find_by_id(BYOK_PLANS_SETTING.to_string())
        .one(&txn)
        .await?;
    let row = setting::ActiveModel {
        key: Set(BYOK_PLANS_SETTING.into()),
        value: Set(value.clone()),
        updated_at: Set(Utc::now()),
    };
    if existing.is_some() {
        row.update(&txn).await?;
    } else {
        setting::Entity::insert(row)
            .exec_without_returning(&txn)
            .await?;
    }
    audit::record(
        &txn,
        by,
        Event {
            action: "byok.plans_changed",
            detail: Some(format!(
                "BYOK allowed for: {}",
                if value.is_empty() { "no plan" } else { &value }
            )),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(Change::everyone(Topic::Keys));
    Ok(())
}
