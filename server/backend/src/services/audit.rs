//! The audit log: append-only (the database itself refuses updates and deletes), written in the
//! same transaction as the change it records where there is one. Entries carry provider ids and
//! masked hints only — never a key — and there is no API to edit or delete them.

use crate::entities::audit_event;
use crate::error::ServiceError;
use crate::services::accounts::SessionUser;
use chrono::{NaiveDate, TimeZone, Utc};
use keyward::dto::{AuditEntry, AuditFilter, AuditPage};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

/// Who did it: a signed-in user, or the operator at the command line.
#[derive(Clone, Debug)]
pub struct By {
    pub id: Option<Uuid>,
    pub email: String,
}

impl By {
    pub fn user(u: &SessionUser) -> Self {
        By {
            id: Some(u.user_id),
            email: u.email.clone(),
        }
    }

    /// A workspace API token, named by its first characters (never the whole token).
    pub fn token(token: &str) -> Self {
        let shown = token
            .char_indices()
            .nth(keyward::tokens::SHOWN_CHARS)
            .map_or(token, |(i, _)| &token[..i]);
        By {
            id: None,
            email: format!("API token {shown}…"),
        }
    }

    /// Keyward itself (spend control's alerts).
    pub fn keyward() -> Self {
        By {
            id: None,
            email: "Keyward".into(),
        }
    }

    pub fn cli() -> Self {
        By {
            id: None,
            email: "operator (command line)".into(),
        }
    }
}

/// One event to record. `action` is a dotted name: `key.created`, `member.role_changed`, …
#[derive(Clone, Debug, Default)]
pub struct Event<'a> {
    pub workspace_id: Option<Uuid>,
    pub action: &'a str,
    pub provider: Option<&'a str>,
    pub hint: Option<&'a str>,
    /// Short, non-secret detail for people reading the log.
    pub detail: Option<String>,
}

pub async fn record<C: ConnectionTrait>(
    db: &C,
    by: &By,
    event: Event<'_>,
) -> Result<(), ServiceError> {
    audit_event::Entity::insert(audit_event::ActiveModel {
        at: Set(Utc::now()),
        workspace_id: Set(event.workspace_id),
        actor_id: Set(by.id),
        actor_email: Set(Some(by.email.clone())),
        action: Set(event.action.to_string()),
        provider: Set(event.provider.map(str::to_string)),
        hint: Set(event.hint.map(str::to_string)),
        detail: Set(event.detail),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// How many entries one page shows at most.
pub const PAGE_LIMIT: u64 = 500;

fn day(s: &Option<String>) -> Result<Option<NaiveDate>, ServiceError> {
    match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| ServiceError::Invalid("dates are written YYYY-MM-DD".into())),
    }
}

fn text(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(254).collect())
}

/// Entries of one workspace (`Some`) or of the platform (`None`: instance-wide events), newest
/// first, filtered.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    workspace_id: Option<Uuid>,
    filter: &AuditFilter,
) -> Result<AuditPage, ServiceError> {
    let mut cond = Condition::all().add(match workspace_id {
        Some(ws) => audit_event::Column::WorkspaceId.eq(ws),
        None => audit_event::Column::WorkspaceId.is_null(),
    });
    if let Some(actor) = text(&filter.actor) {
        cond = cond.add(audit_event::Column::ActorEmail.contains(actor.to_lowercase()));
    }
    if let Some(action) = text(&filter.action) {
        cond = cond.add(audit_event::Column::Action.starts_with(action));
    }
    if let Some(provider) = text(&filter.provider) {
        cond = cond.add(audit_event::Column::Provider.eq(provider));
    }
    if let Some(from) = day(&filter.from)? {
        let start = Utc.from_utc_datetime(&from.and_hms_opt(0, 0, 0).unwrap_or_default());
        cond = cond.add(audit_event::Column::At.gte(start));
    }
    if let Some(to) = day(&filter.to)? {
        let end = to.succ_opt().unwrap_or(to);
        let end = Utc.from_utc_datetime(&end.and_hms_opt(0, 0, 0).unwrap_or_default());
        cond = cond.add(audit_event::Column::At.lt(end));
    }
    let mut rows = audit_event::Entity::find()
        .filter(cond)
        .order_by_desc(audit_event::Column::Id)
        .limit(PAGE_LIMIT + 1)
        .all(db)
        .await?;
    let truncated = rows.len() as u64 > PAGE_LIMIT;
    rows.truncate(PAGE_LIMIT as usize);
    Ok(AuditPage {
        entries: rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: r.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                actor: r.actor_email,
                action: r.action,
                provider: r.provider,
                hint: r.hint,
                detail: r.detail,
            })
            .collect(),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::By;

    #[test]
    fn a_token_is_named_by_its_first_characters_only() {
        let by = By::token("kw_abcdefSECRETSECRET");
        assert_eq!(by.email, "API token kw_abcdef…");
        assert_eq!(by.id, None);
        // Short or non-ASCII input never panics on a character boundary.
        assert_eq!(By::token("kw_").email, "API token kw_…");
        assert_eq!(By::token("ééééééééééé").email, "API token ééééééééé…");
    }
}
