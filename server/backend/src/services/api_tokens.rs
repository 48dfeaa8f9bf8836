//! Workspace API tokens: created (the token is returned once), listed, revoked, and checked on
//! every public API request. Only the SHA-256 of a token is stored; a lookup is by that hash (a
//! unique index), so checking a token costs one indexed read and never compares secrets.

use crate::entities::{api_token, chatbot, user};
use crate::error::ServiceError;
use crate::invalidation::{Change, Invalidation, Seen, Topic};
use crate::services::audit::{self, By, Event};
use crate::services::fmt_time;
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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
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
    /// When the token stops working (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
}

impl TokenAuth {
    pub fn allows(&self, scope: TokenScope) -> bool {
        self.scopes.contains(&scope)
    }
}

impl TryFrom<keyward::tokens::NewApiToken> for NewToken {
    type Error = ServiceError;

    /// The dashboard's and the REST API's request: the chatbot id, if any, must parse.
    fn try_from(n: keyward::tokens::NewApiToken) -> Result<Self, ServiceError> {
        let chatbot = match n.chatbot_id.trim() {
            "" => None,
            s => Some(
                Uuid::parse_str(s).map_err(|_| ServiceError::Invalid("no such chatbot".into()))?,
            ),
        };
        Ok(NewToken {
            name: n.name,
            scopes: n.scopes,
            chatbot,
            expires_in_days: n.expires_in_days,
        })
    }
}

/// The API tokens page of a workspace for a viewer who may (or may not) manage them.
pub async fn page(
    db: &DatabaseConnection,
    ok: &crate::auth::Authorized,
) -> Result<keyward::tokens::ApiTokensPage, ServiceError> {
    use keyward::policy::{Action, can};
    let ws = &ok.workspace;
    let tokens = list(db, ws.id).await?;
    let chatbots = crate::services::chatbots::list(db, ws.id)
        .await?
        .into_iter()
        .map(|c| (c.id.to_string(), c.name))
        .collect();
    Ok(keyward::tokens::ApiTokensPage {
        workspace: crate::services::workspaces::summary(ws, ok.actor.role)?,
        tokens,
        chatbots,
        can_manage: can(ok.actor, Action::ManageApiTokens),
        default_provider: ws.default_provider.clone(),
        can_set_default: can(ok.actor, Action::ManageKeys),
    })
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
/// Creates a token. When another token creates it (`parent`: a management token through the
/// REST API), the new one never exceeds its creator: no scope the creator lacks, the creator's
/// chatbot binding, and an expiry no later than the creator's.
pub async fn create(
    db: &DatabaseConnection,
    by: &By,
    workspace: Uuid,
    mut new: NewToken,
    parent: Option<&TokenAuth>,
) -> Result<(ApiTokenView, Zeroizing<String>), ServiceError> {
    let mut ceiling = None;
    if let Some(p) = parent {
        if let Some(extra) = new.scopes.iter().find(|s| !p.scopes.contains(s)) {
            return Err(ServiceError::Invalid(format!(
                "a token cannot grant the {} scope: the token creating it does not have it",
                extra.as_str()
            )));
        }
        if let Some(bound) = p.chatbot {
            match new.chatbot {
                None => new.chatbot = Some(bound),
                Some(b) if b == bound => {}
                Some(_) => {
                    return Err(ServiceError::Invalid(
                        "the token creating this one is bound to a chatbot: the new token is \
                         bound to the same one"
                            .into(),
                    ));
                }
            }
        }
        ceiling = p.expires_at;
    }
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
        expires_at: Set(
            match (
                new.expires_in_days
                    .map(|d| now + Duration::days(i64::from(d))),
                ceiling,
            ) {
                (Some(asked), Some(cap)) => Some(asked.min(cap)),
                (asked, cap) => asked.or(cap),
            },
        ),
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
    changes: &Invalidation,
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
    changes.publish(Change::workspace(Topic::Tokens, workspace));
    Ok(())
}

/// Longest a cached check is trusted without re-reading the database (a token revoked on
/// *another* instance stops working here within this time; on this one, at once).
pub const CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

struct Cached {
    auth: Arc<TokenAuth>,
    expires_at: Option<DateTime<Utc>>,
    seen: Seen,
    loaded: std::time::Instant,
    /// Unix seconds `last_used_at` was last written (at most once a [`LAST_USED_EVERY`]).
    last_written: AtomicI64,
}

/// Checked tokens by hash, so a warm request costs one SHA-256 and a map lookup: no database
/// read. Only live tokens are cached (an unknown token cannot grow the map).
#[derive(Clone)]
pub struct TokenCache {
    entries: Arc<RwLock<HashMap<String, Cached>>>,
    /// Concurrent misses of one token read it once.
    flight: Arc<crate::single_flight::SingleFlight>,
    changes: Invalidation,
    /// Where the `last_used_at` writes run (shutdown waits for them).
    tasks: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(changes: Invalidation, tasks: tokio_util::task::TaskTracker) -> Self {
        Self {
            entries: Default::default(),
            flight: Default::default(),
            changes,
            tasks,
        }
    }

    fn current(&self, c: &Cached) -> bool {
        c.loaded.elapsed() < CACHE_MAX_AGE
            && self
                .changes
                .fresh(Topic::Tokens, Some(c.auth.workspace), c.seen)
    }

    /// The cached answer for a token hash, if fresh: `Some(None)` for a cached token that has
    /// since expired. Writes `last_used_at` off the request's path when it is due.
    fn warm(&self, db: &DatabaseConnection, hash: &str) -> Option<Option<Arc<TokenAuth>>> {
        let now = Utc::now();
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let c = map.get(hash)?;
        if !self.current(c) {
            return None;
        }
        if c.expires_at.is_some_and(|e| e <= now) {
            return Some(None);
        }
        let last = c.last_written.load(Ordering::Relaxed);
        if now.timestamp() - last >= LAST_USED_EVERY.num_seconds()
            && c.last_written
                .compare_exchange(last, now.timestamp(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let (db, id) = (db.clone(), c.auth.token_id);
            self.tasks.spawn(async move {
                let done = api_token::Entity::update_many()
                    .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
                    .filter(api_token::Column::Id.eq(id))
                    .exec(&db)
                    .await;
                if let Err(e) = done {
                    tracing::warn!(token = %id, error = %e, "could not record a token's last use");
                }
            });
        }
        Some(Some(c.auth.clone()))
    }

    /// [`authenticate`], answered from memory when warm. `last_used_at` is written off the
    /// request's path, at most once a minute per token.
    pub async fn authenticate(
        &self,
        db: &DatabaseConnection,
        presented: &str,
    ) -> Result<Option<Arc<TokenAuth>>, ServiceError> {
        if !looks_like_token(presented) {
            return Ok(None);
        }
        let hash = crypto::token_hash(presented);
        if let Some(hit) = self.warm(db, &hash) {
            return Ok(hit);
        }
        let _turn = self.flight.turn(&hash).await;
        if let Some(hit) = self.warm(db, &hash) {
            return Ok(hit);
        }
        let seen = self.changes.seen();
        let now = Utc::now();
        let Some((auth, expires_at)) = check(db, presented).await? else {
            return Ok(None);
        };
        let auth = Arc::new(auth);
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, c| self.current(c));
        map.insert(
            hash,
            Cached {
                auth: auth.clone(),
                expires_at,
                seen,
                loaded: std::time::Instant::now(),
                last_written: AtomicI64::new(now.timestamp()),
            },
        );
        Ok(Some(auth))
    }
}

/// Checks a presented token. `None` for anything that is not a live token of a workspace:
/// malformed, unknown, revoked, expired, or bound to a chatbot that no longer exists.
pub async fn authenticate(
    db: &DatabaseConnection,
    presented: &str,
) -> Result<Option<TokenAuth>, ServiceError> {
    Ok(check(db, presented).await?.map(|(auth, _)| auth))
}

/// The database check of a token: the token and its expiry.
async fn check(
    db: &DatabaseConnection,
    presented: &str,
) -> Result<Option<(TokenAuth, Option<DateTime<Utc>>)>, ServiceError> {
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
    Ok(Some((
        TokenAuth {
            token_id: row.id,
            workspace: row.workspace_id,
            scopes: scopes_from_text(&row.scopes).unwrap_or_default(),
            chatbot: row.chatbot_id,
            expires_at: row.expires_at,
        },
        row.expires_at,
    )))
}
