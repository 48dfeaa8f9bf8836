//! Workspace API tokens: created (the token is returned once), listed, revoked, and checked on
//! every public API request. Only the SHA-256 of a token is stored; a lookup is by that hash (a
//! unique index), so checking a token costs one indexed read and never compares secrets.

use crate::entities::{api_token, chatbot, user};
use crate::error::ServiceError;
use crate::services::audit::{self, By, Event};
use crate::services::keys::fmt_time;
use crate::vault::crypto;
use chrono::{DateTime, Duration, Utc};
use keyward::tokens::{
    ApiTokenView, MAX_NAME_CHARS, SHOWN_CHARS, TOKEN_PREFIX, TokenScope, looks_like_token,
    scopes_from_text, scopes_to_text,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use std::collections::HashMap;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Longest expiry a token may be given.
pub const MAX_EXPIRY_DAYS: u32 = 3_650;
/// `last_used_at` is written at most this often per token.
pub const LAST_USED_EVERY: Duration = Duration::seconds(60);

pub struct NewToken {
    pub name: String,
    pub scopes: Vec<TokenScope>,
    /// Bind the token to one chatbot of the workspace (its keys and settings).
    pub chatbot: Option<Uuid>,
    /// `None`: never expires.
    pub expires_in_days: Option<u32>,
}

/// A checked token: what the request may do, and for which workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAuth {
    pub token_id: Uuid,
    pub workspace: Uuid,
    pub scopes: Vec<TokenScope>,
    pub chatbot: Option<Uuid>,
}

impl TokenAuth {
    pub fn allows(&self, scope: TokenScope) -> bool {
        self.scopes.contains(&scope)
    }
}

fn view(
    row: &api_token::Model,
    emails: &HashMap<Uuid, String>,
    now: DateTime<Utc>,
) -> ApiTokenView {
    ApiTokenView {
        id: row.id.to_string(),
        name: row.name.clone(),
        shown: format!("{}…", row.shown),
        scopes: scopes_from_text(&row.scopes).unwrap_or_default(),
        chatbot_id: row.chatbot_id.map(|c| c.to_string()),
        expires_at: row.expires_at.map(fmt_time),
        last_used_at: row.last_used_at.map(fmt_time),
        created_at: fmt_time(row.created_at),
        created_by: row.created_by.and_then(|u| emails.get(&u).cloned()),
        revoked: row.revoked_at.is_some(),
        expired: row.expires_at.is_some_and(|e| e <= now),
    }
}

/// Creates a token and returns it with the one and only copy of its secret.
pub async fn create(
    db: &DatabaseConnection,
    by: &By,
    workspace: Uuid,
    new: NewToken,
) -> Result<(ApiTokenView, Zeroizing<String>), ServiceError> {
    let name = new.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::Invalid(format!(
            "give the token a name of 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if new.scopes.is_empty() {
        return Err(ServiceError::Invalid("choose at least one scope".into()));
    }
    if let Some(d) = new.expires_in_days
        && !(1..=MAX_EXPIRY_DAYS).contains(&d)
    {
        return Err(ServiceError::Invalid(format!(
            "expiry: 1 to {MAX_EXPIRY_DAYS} days, or none"
        )));
    }
    if let Some(bot) = new.chatbot {
        crate::services::chatbots::get(db, workspace, bot).await?;
    }
    let secret = crypto::random_token().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", secret.as_str()));
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    let row = api_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        workspace_id: Set(workspace),
        name: Set(name.clone()),
        token_hash: Set(crypto::token_hash(&token)),
        shown: Set(token[..SHOWN_CHARS].to_string()),
        scopes: Set(scopes_to_text(&new.scopes)),
        chatbot_id: Set(new.chatbot),
        expires_at: Set(new
            .expires_in_days
            .map(|d| now + Duration::days(i64::from(d)))),
        last_used_at: Set(None),
        created_by: Set(by.id),
        created_at: Set(now),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(workspace),
            action: "token.created",
            hint: Some(&format!("{}…", row.shown)),
            detail: Some(format!(
                "{name}: {}{}",
                row.scopes,
                new.expires_in_days
                    .map(|d| format!(", expires in {d} days"))
                    .unwrap_or_default()
            )),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    let emails = by
        .id
        .map(|id| HashMap::from([(id, by.email.clone())]))
        .unwrap_or_default();
    Ok((view(&row, &emails, now), token))
}

/// The workspace's tokens, newest first (revoked ones included, marked).
pub async fn list(
    db: &DatabaseConnection,
    workspace: Uuid,
) -> Result<Vec<ApiTokenView>, ServiceError> {
    let rows = api_token::Entity::find()
        .filter(api_token::Column::WorkspaceId.eq(workspace))
        .order_by_desc(api_token::Column::CreatedAt)
        .all(db)
        .await?;
    let ids: Vec<Uuid> = rows.iter().filter_map(|r| r.created_by).collect();
    let emails: HashMap<Uuid, String> = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    let now = Utc::now();
    Ok(rows.iter().map(|r| view(r, &emails, now)).collect())
}

/// Revokes a token of the workspace (another workspace's id: not found). Idempotent.
pub async fn revoke(
    db: &DatabaseConnection,
    by: &By,
    workspace: Uuid,
    id: Uuid,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let row = api_token::Entity::find_by_id(id)
        .filter(api_token::Column::WorkspaceId.eq(workspace))
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if row.revoked_at.is_some() {
        return Ok(());
    }
    let mut active: api_token::ActiveModel = row.clone().into();
    active.revoked_at = Set(Some(Utc::now()));
    active.update(&txn).await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(workspace),
            action: "token.revoked",
            hint: Some(&format!("{}…", row.shown)),
            detail: Some(row.name.clone()),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Checks a presented token. `None` for anything that is not a live token of a workspace:
/// malformed, unknown, revoked, expired, or bound to a chatbot that no longer exists.
pub async fn authenticate(
    db: &DatabaseConnection,
    presented: &str,
) -> Result<Option<TokenAuth>, ServiceError> {
    if !looks_like_token(presented) {
        return Ok(None);
    }
    let Some(row) = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(crypto::token_hash(presented)))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let now = Utc::now();
    if row.revoked_at.is_some() || row.expires_at.is_some_and(|e| e <= now) {
        return Ok(None);
    }
    if let Some(bot) = row.chatbot_id
        && chatbot::Entity::find_by_id(bot).one(db).await?.is_none()
    {
        return Ok(None);
    }
    if row.last_used_at.is_none_or(|t| now - t >= LAST_USED_EVERY) {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
            .filter(api_token::Column::Id.eq(row.id))
            .exec(db)
            .await?;
    }
    Ok(Some(TokenAuth {
        token_id: row.id,
        workspace: row.workspace_id,
        scopes: scopes_from_text(&row.scopes).unwrap_or_default(),
        chatbot: row.chatbot_id,
    }))
}
