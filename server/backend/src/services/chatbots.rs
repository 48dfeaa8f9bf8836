//! Chatbots of a workspace: create, list, delete. Every query is scoped by the workspace id, so
//! another tenant's chatbot id answers `NotFound`. Deleting a chatbot purges its own keys (their
//! ciphertexts) and audits it.

use crate::entities::{chatbot, credential};
use crate::error::ServiceError;
use crate::invalidation::{Change, Invalidation, Topic};
use crate::services::audit::{self, By, Event};
use chrono::Utc;
use keyward::account::{parse_workspace_name, slugify};
use keyward::catalogue;
use keyward::credential::CredentialScope;
use keyward::dto::ChatbotView;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Set,
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
        allowed_sites: c
            .allowed_sites
            .lines()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
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

/// The fields `create` and `update` share, checked: name, provider, model.
fn checked_basics(
    name: &str,
    provider: &str,
    model: &str,
    system_prompt: &str,
    greeting: &str,
) -> Result<(String, &'static catalogue::Provider, Option<String>), ServiceError> {
    let name = parse_workspace_name(name)
        .map_err(|_| ServiceError::Invalid("a chatbot name has 1 to 80 characters".into()))?;
    let provider = catalogue::provider(provider.trim())
        .ok_or_else(|| ServiceError::Invalid("choose a provider".into()))?;
    let model = keyward::keys::parse_model(model).map_err(|m| ServiceError::Invalid(m.into()))?;
    if system_prompt.len() > MAX_PROMPT || greeting.len() > MAX_PROMPT {
        return Err(ServiceError::Invalid(
            "the system prompt and greeting may have at most 20 000 characters".into(),
        ));
    }
    Ok((name, provider, model))
}

pub async fn create(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    new: NewChatbot,
) -> Result<chatbot::Model, ServiceError> {
    let (name, provider, model) = checked_basics(
        &new.name,
        &new.provider,
        &new.model,
        &new.system_prompt,
        &new.greeting,
    )?;
    let base = match slugify(&name) {
        s if s.is_empty() => "chatbot".to_string(),
        s => s,
    };
    let txn = crate::db::begin_write(db).await?;
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
        allowed_sites: Set(String::new()),
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

/// Everything an owner or admin can change on a chatbot; its slug (the public address) stays.
pub use keyward::dto::ChatbotUpdate as ChatbotSettings;

pub const MAX_ALLOWED_MODELS: usize = 20;
pub const MAX_TOKENS_LIMIT: u32 = 200_000;

/// Checks and normalises the allowed-models list: known providers, `provider/model` form, no
/// duplicates.
fn parse_allowed_models(list: &[String]) -> Result<Vec<String>, ServiceError> {
    let mut out: Vec<String> = Vec::new();
    for raw in list.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        let Some((provider, model)) = keyward::chat::split_model_id(raw) else {
            return Err(ServiceError::Invalid(format!(
                "allowed models are written provider/model, e.g. openai/gpt-4o-mini (got \"{}\")",
                raw.chars().take(60).collect::<String>()
            )));
        };
        if catalogue::provider(provider).is_none() {
            return Err(ServiceError::Invalid(format!(
                "unknown provider \"{}\" in the allowed models",
                provider.chars().take(40).collect::<String>()
            )));
        }
        let model =
            keyward::keys::parse_model(model).map_err(|m| ServiceError::Invalid(m.into()))?;
        let id = keyward::chat::model_id(provider, model.as_deref().unwrap_or_default());
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.len() > MAX_ALLOWED_MODELS {
        return Err(ServiceError::Invalid(format!(
            "at most {MAX_ALLOWED_MODELS} allowed models"
        )));
    }
    Ok(out)
}

pub async fn update(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    id: Uuid,
    new: ChatbotSettings,
) -> Result<chatbot::Model, ServiceError> {
    let (name, provider, model) = checked_basics(
        &new.name,
        &new.provider,
        &new.model,
        &new.system_prompt,
        &new.greeting,
    )?;
    if !(0.0..=2.0).contains(&new.temperature) || !new.temperature.is_finite() {
        return Err(ServiceError::Invalid(
            "temperature is a number from 0 to 2".into(),
        ));
    }
    if !(1..=MAX_TOKENS_LIMIT).contains(&new.max_tokens) {
        return Err(ServiceError::Invalid(format!(
            "max tokens is a whole number from 1 to {MAX_TOKENS_LIMIT}"
        )));
    }
    if new.daily_cap > 10_000_000 {
        return Err(ServiceError::Invalid(
            "the daily cap is at most 10 000 000 messages (0: no cap)".into(),
        ));
    }
    let allowed = parse_allowed_models(&new.allowed_models)?;
    let sites =
        keyward::chat::parse_allowed_sites(&new.allowed_sites).map_err(ServiceError::Invalid)?;
    let txn = crate::db::begin_write(db).await?;
    let bot = get(&txn, workspace_id, id).await?;
    let mut changed = Vec::new();
    let mut row: chatbot::ActiveModel = bot.clone().into();
    macro_rules! set {
        ($field:ident, $label:literal, $value:expr) => {{
            let value = $value;
            if bot.$field != value {
                changed.push($label);
                row.$field = Set(value);
            }
        }};
    }
    set!(name, "name", name);
    set!(provider, "provider", provider.id.to_string());
    set!(model, "model", model);
    set!(
        system_prompt,
        "system prompt",
        new.system_prompt.trim().to_string()
    );
    set!(greeting, "greeting", new.greeting.trim().to_string());
    set!(temperature, "temperature", new.temperature);
    set!(
        max_tokens,
        "max tokens",
        i32::try_from(new.max_tokens).unwrap_or(i32::MAX)
    );
    set!(public, "public", new.public);
    set!(allowed_models, "allowed models", allowed.join(","));
    set!(
        daily_cap,
        "daily cap",
        i32::try_from(new.daily_cap).unwrap_or(i32::MAX)
    );
    set!(allowed_sites, "allowed sites", sites.join("\n"));
    if changed.is_empty() {
        return Ok(bot);
    }
    row.updated_at = Set(Utc::now());
    let saved = row.update(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(workspace_id),
            action: "chatbot.updated",
            provider: Some(provider.id),
            detail: Some(format!(
                "{} (/{}): {}{}",
                saved.name,
                saved.slug,
                changed.join(", "),
                if saved.public {
                    "; public"
                } else {
                    "; private"
                }
            )),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    Ok(saved)
}

/// Finds a chatbot by its workspace's slug and its own (the public chat address).
pub async fn by_slugs(
    db: &DatabaseConnection,
    workspace_slug: &str,
    chatbot_slug: &str,
) -> Result<(crate::entities::workspace::Model, chatbot::Model), ServiceError> {
    use crate::entities::workspace;
    let ws = workspace::Entity::find()
        .filter(workspace::Column::Slug.eq(workspace_slug))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let bot = chatbot::Entity::find()
        .filter(chatbot::Column::WorkspaceId.eq(ws.id))
        .filter(chatbot::Column::Slug.eq(chatbot_slug))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    Ok((ws, bot))
}

/// Deletes a chatbot and purges its own keys. Purging keys is an owner's decision: a caller who
/// may not manage keys (`may_manage_keys` from `keyward::policy`: admins, management tokens)
/// gets a refusal that says so when the chatbot holds keys of its own.
pub async fn delete(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    workspace_id: Uuid,
    id: Uuid,
    may_manage_keys: bool,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let bot = get(&txn, workspace_id, id).await?;
    let own_keys = || {
        credential::Entity::find()
            .filter(credential::Column::Scope.eq(CredentialScope::Chatbot.as_str()))
            .filter(credential::Column::OwnerId.eq(id))
            .filter(credential::Column::WorkspaceId.eq(workspace_id))
    };
    if !may_manage_keys && own_keys().count(&txn).await? > 0 {
        return Err(ServiceError::Conflict(
            "this chatbot holds provider keys of its own: only an owner can delete it \
             (or an owner deletes its keys first)"
                .into(),
        ));
    }
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
    changes.publish(Change::workspace(Topic::Keys, workspace_id));
    // Tokens bound to the chatbot went with it.
    changes.publish(Change::workspace(Topic::Tokens, workspace_id));
    Ok(())
}

/// The chatbots page of a workspace.
pub async fn page(
    db: &DatabaseConnection,
    ok: &crate::auth::Authorized,
) -> Result<keyward::dto::ChatbotsPage, ServiceError> {
    let rows = list(db, ok.workspace.id).await?;
    Ok(keyward::dto::ChatbotsPage {
        workspace: crate::services::workspaces::summary(&ok.workspace, ok.actor.role)?,
        chatbots: rows.iter().map(view).collect(),
        can_manage: keyward::policy::can(ok.actor, keyward::policy::Action::ManageChatbots),
    })
}
