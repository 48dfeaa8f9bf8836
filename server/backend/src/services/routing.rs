//! How a workspace's requests are routed, beyond its keys: the failure policy (whether a failing
//! own key falls back to the platform's) and the default provider for bare model ids.

use crate::entities::workspace;
use crate::error::ServiceError;
use crate::invalidation::{Change, Invalidation, Topic};
use crate::services::audit::{self, By, Event};
use chrono::Utc;
use keyward::keys::FailurePolicy;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use uuid::Uuid;

pub async fn set_failure_policy(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    workspace_id: Uuid,
    policy: FailurePolicy,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let ws = workspace::Entity::find_by_id(workspace_id)
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if ws.failure_policy == policy.as_str() {
        return Ok(());
    }
    let mut am: workspace::ActiveModel = ws.into();
    am.failure_policy = Set(policy.as_str().into());
    am.updated_at = Set(Utc::now());
    am.update(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(workspace_id),
            action: "policy.failure_changed",
            detail: Some(policy.as_str().into()),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(Change::workspace(Topic::Keys, workspace_id));
    Ok(())
}

/// Sets where the public API sends a bare model id (`None`: the first provider with a key).
pub async fn set_default_provider(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    workspace_id: Uuid,
    provider: Option<&str>,
) -> Result<(), ServiceError> {
    let provider = match provider.map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            keyward::catalogue::provider(p)
                .ok_or_else(|| ServiceError::Invalid(format!("unknown provider: {p}")))?
                .id
                .to_string(),
        ),
    };
    let txn = crate::db::begin_write(db).await?;
    let ws = workspace::Entity::find_by_id(workspace_id)
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if ws.default_provider == provider {
        return Ok(());
    }
    let mut am: workspace::ActiveModel = ws.into();
    am.default_provider = Set(provider.clone());
    am.updated_at = Set(Utc::now());
    am.update(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(workspace_id),
            action: "workspace.default_provider_changed",
            detail: Some(provider.unwrap_or_else(|| "automatic".into())),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(Change::workspace(Topic::Keys, workspace_id));
    Ok(())
}
