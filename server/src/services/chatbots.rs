//! Chatbots of a workspace: create, list, delete. Every query is scoped by the workspace id, so
//! another tenant's chatbot id answers `NotFound`. Deleting a chatbot purges its own keys (their
//! ciphertexts) and audits it.

use crate::entities::{chatbot, credential};
use crate::error::ServiceError;
use crate::services::audit::{self, By, Event};
use chrono::Utc;
use keyward::account::{parse_workspace_name, slugify};
use keyward::catalogue;
use keyward::credential::CredentialScope;
use keyward::dto::ChatbotView;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use uuid::Uuid;

/// What an owner or admin fills in to create a chatbot.
#[derive(Clone, Debug, Default)]
pub struct NewChatbot {
    pub name: String,
    pub provider: String,
    /// Empty: the key's or provider's default.
    pub model: String,
    pub system_prompt: String,
    pub greeting: String,
    pub public: bool,
}

pub fn view(c: &chatbot::Model) -> ChatbotView {
    ChatbotView {
        id: c.id.to_string(),
        name: c.name.clone(),
        slug: c.slug.clone(),
        provider: c.provider.clone(),
        model: c.model.clone(),
        public: c.public,
        system_prompt: c.system_prompt.clone(),
        greeting: c.greeting.clone(),
        temperature: c.temperature,
        max_tokens: u32::try_from(c.max_tokens).unwrap_or(0),
        allowed_models: c
            .allowed_models
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect(),
        daily_cap: u32::try_from(c.daily_cap).unwrap_or(0),
    }
}

pub async fn list(
    db: &DatabaseConnection,
    workspace_id: Uuid,
) -> Result<Vec<chatbot::Model>, ServiceError> {
    Ok(chatbot::Entity::find()
        .filter(chatbot::Column::WorkspaceId.eq(workspace_id))
        .order_by_asc(chatbot::Column::Name)
        .all(db)
        .await?)
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<chatbot::Model, ServiceError> {
    chatbot::Entity::find_by_id(id)
        .filter(chatbot::Column::WorkspaceId.eq(workspace_id))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)
}

const MAX_PROMPT: usize = 20_000;

pub async fn create(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    new: NewChatbot,
) -> Result<chatbot::Model, ServiceError> {
    let name = parse_workspace_name(&new.name)
        .map_err(|_| ServiceError::Invalid("a chatbot name has 1 to 80 characters".into()))?;
    let provider = catalogue::provider(new.provider.trim())
        .ok_or_else(|| ServiceError::Invalid("choose a provider".into()))?;
    let model =
        keyward::keys::parse_model(&new.model).map_err(|m| ServiceError::Invalid(m.into()))?;
    if new.system_prompt.len() > MAX_PROMPT || new.greeting.len() > MAX_PROMPT {
        return Err(ServiceError::Invalid(
            "the system prompt and greeting may have at most 20 000 characters".into(),
        ));
    }
    let base = match slugify(&name) {
        s if s.is_empty() => "chatbot".to_string(),
        s => s,
    };
    let txn = db.begin().await?;
    let taken: Vec<String> = chatbot::Entity::find()
        .filter(chatbot::Column::WorkspaceId.eq(workspace_id))
        .filter(chatbot::Column::Slug.starts_with(base.as_str()))
        .all(&txn)
        .await?
        .into_iter()
        .map(|c| c.slug)
        .collect();
    let slug = (1..)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|s| !taken.contains(s))
        .unwrap_or(base);
    let now = Utc::now();
    let row = chatbot::ActiveModel {
        id: Set(Uuid::new_v4()),
        workspace_id: Set(workspace_id),
        name: Set(name),
        slug: Set(slug),
        system_prompt: Set(new.system_prompt.trim().to_string()),
        greeting: Set(new.greeting.trim().to_string()),
        provider: Set(provider.id.into()),
        model: Set(model),
        temperature: Set(0.7),
        max_tokens: Set(1024),
        public: Set(new.public),
        allowed_models: Set(String::new()),
        daily_cap: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(workspace_id),
            action: "chatbot.created",
            provider: Some(provider.id),
            detail: Some(format!("{} (/{})", row.name, row.slug)),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    Ok(row)
}

/// Deletes a chatbot and purges its own keys.
pub async fn delete(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<(), ServiceError> {
    let txn = db.begin().await?;
    let bot = get(&txn, workspace_id, id).await?;
    let keys = credential::Entity::delete_many()
        .filter(credential::Column::Scope.eq(CredentialScope::Chatbot.as_str()))
        .filter(credential::Column::OwnerId.eq(id))
        .filter(credential::Column::WorkspaceId.eq(workspace_id))
        .exec(&txn)
        .await?;
    chatbot::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(workspace_id),
            action: "chatbot.deleted",
            detail: Some(format!(
                "{} (/{}), {} own keys purged",
                bot.name, bot.slug, keys.rows_affected
            )),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    crate::gateway::cache::changed();
    Ok(())
}
