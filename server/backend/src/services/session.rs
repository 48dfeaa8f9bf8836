//! What the browser learns about its caller: whether the instance needs setting up, the
//! signed-in user with their workspaces and the current one, and their sessions.

use crate::error::ServiceError;
use crate::services::accounts::{self, SessionUser};
use crate::services::workspaces::{self, summary};
use keyward::dto::{Me, SessionState, SessionView, WorkspaceSummary};
use sea_orm::DatabaseConnection;

/// The signed-in user with their workspaces; the current one is the one they chose (a platform
/// admin may look into any), else their first.
pub async fn me(db: &DatabaseConnection, who: &SessionUser) -> Result<Me, ServiceError> {
    let mine = workspaces::list_for_user(db, who.user_id).await?;
    let list: Vec<WorkspaceSummary> = mine
        .iter()
        .map(|(w, r)| summary(w, Some(*r)))
        .collect::<Result<_, _>>()?;
    let current = match who.current_workspace {
        Some(cur) => match list.iter().find(|w| w.id == cur.to_string()) {
            Some(w) => Some(w.clone()),
            None if who.platform_admin => match workspaces::get(db, cur).await {
                Ok(w) => Some(summary(&w, None)?),
                Err(_) => None,
            },
            None => list.first().cloned(),
        },
        None => list.first().cloned(),
    };
    Ok(Me {
        user_id: who.user_id.to_string(),
        email: who.email.clone(),
        display_name: who.display_name.clone(),
        platform_admin: who.platform_admin,
        workspaces: list,
        current,
    })
}

/// Who is looking (the `get_session_state` server function and the page renderer both answer
/// with this).
pub async fn state(
    db: &DatabaseConnection,
    open_sign_up: bool,
    who: Option<&SessionUser>,
) -> Result<SessionState, ServiceError> {
    let needs_setup = accounts::needs_setup(db).await?;
    let me = match who {
        Some(who) => Some(me(db, who).await?),
        None => None,
    };
    Ok(SessionState {
        needs_setup,
        open_sign_up,
        me,
    })
}

/// The user's live sessions, the caller's own marked.
pub async fn sessions(
    db: &DatabaseConnection,
    who: &SessionUser,
) -> Result<Vec<SessionView>, ServiceError> {
    Ok(accounts::list_sessions(db, who)
        .await?
        .into_iter()
        .map(|(current, s)| SessionView {
            current,
            created_at: s.created_at.to_rfc3339(),
            last_seen_at: s.last_seen_at.to_rfc3339(),
            user_agent: s.user_agent,
        })
        .collect())
}
