//! Workspaces and their people: listing, renaming, members and roles (a workspace always keeps
//! an owner), invitations (single use, expiring), ownership transfer, plans. Every function takes
//! the workspace id and scopes its SQL by it.

use crate::entities::{invitation, membership, user, workspace};
use crate::error::ServiceError;
use crate::invalidation::{Change, Invalidation, Topic};
use crate::services::accounts::{self, SessionUser};
use crate::services::audit::{self, By, Event};
use crate::vault::crypto;
use chrono::{Duration, Utc};
use keyward::account::{Email, parse_workspace_name};
use keyward::policy::{Plan, Role};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;
use zeroize::Zeroizing;

pub const INVITATION_TTL: Duration = Duration::days(7);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
}

fn role_of(s: &str) -> Result<Role, ServiceError> {
    s.parse()
        .map_err(|_| ServiceError::Internal(format!("unknown role {s:?} in the database")))
}

/// The workspaces a user belongs to, with their role, by name.
pub async fn list_for_user(
    db: &DatabaseConnection,
    user_id: Uuid,
) -> Result<Vec<(workspace::Model, Role)>, ServiceError> {
    let memberships = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(memberships.len());
    for m in memberships {
        if let Some(ws) = workspace::Entity::find_by_id(m.workspace_id)
            .one(db)
            .await?
        {
            out.push((ws, role_of(&m.role)?));
        }
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}

pub async fn get(db: &DatabaseConnection, id: Uuid) -> Result<workspace::Model, ServiceError> {
    workspace::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// The operator's rules for workspaces users create themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How many workspaces one user may own (platform admins: any number).
    pub owned_per_user: u32,
    /// Whether such a workspace gets its plan's monthly allowance.
    pub allowance: bool,
}

pub const WORKSPACES_PER_USER_SETTING: &str = "workspaces_per_user";
pub const SELF_SERVICE_ALLOWANCE_SETTING: &str = "self_service_allowance";
/// Workspaces a user may own unless the operator says otherwise.
pub const DEFAULT_WORKSPACES_PER_USER: u32 = 3;

pub async fn policy<C: sea_orm::ConnectionTrait>(db: &C) -> Result<Policy, ServiceError> {
    use crate::db::get_setting;
    let owned_per_user = get_setting(db, WORKSPACES_PER_USER_SETTING)
        .await?
        .map_or(Ok(DEFAULT_WORKSPACES_PER_USER), |v| {
            crate::entities::checked("settings.workspaces_per_user", &v)
        })?;
    let allowance = get_setting(db, SELF_SERVICE_ALLOWANCE_SETTING)
        .await?
        .is_none_or(|v| v == "true");
    Ok(Policy {
        owned_per_user,
        allowance,
    })
}

/// The platform admin sets the workspace policy (audited).
pub async fn set_policy(db: &DatabaseConnection, by: &By, p: Policy) -> Result<(), ServiceError> {
    use crate::db::put_setting;
    if p.owned_per_user > 1000 {
        return Err(ServiceError::Invalid(
            "a user may own at most 1000 workspaces".into(),
        ));
    }
    let txn = crate::db::begin_write(db).await?;
    put_setting(
        &txn,
        WORKSPACES_PER_USER_SETTING,
        &p.owned_per_user.to_string(),
    )
    .await?;
    put_setting(
        &txn,
        SELF_SERVICE_ALLOWANCE_SETTING,
        if p.allowance { "true" } else { "false" },
    )
    .await?;
    audit::record(
        &txn,
        by,
        Event {
            action: "workspaces.policy_changed",
            detail: Some(format!(
                "a user may own {} workspaces; new ones {} their plan's allowance",
                p.owned_per_user,
                if p.allowance { "get" } else { "do not get" }
            )),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A workspace a user creates for themselves, within the operator's policy: at most
/// [`Policy::owned_per_user`] owned (platform admins excepted), with or without its plan's
/// allowance.
pub async fn create(
    db: &DatabaseConnection,
    owner: &SessionUser,
    name: &str,
) -> Result<workspace::Model, ServiceError> {
    use sea_orm::{ActiveModelTrait, PaginatorTrait, Set};
    let name = parse_workspace_name(name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let txn = crate::db::begin_write(db).await?;
    let p = policy(&txn).await?;
    if !owner.platform_admin {
        let owned = membership::Entity::find()
            .filter(membership::Column::UserId.eq(owner.user_id))
            .filter(membership::Column::Role.eq(keyward::policy::Role::Owner.as_str()))
            .count(&txn)
            .await?;
        if owned >= u64::from(p.owned_per_user) {
            return Err(ServiceError::Invalid(format!(
                "you already own {owned} workspaces, the most this instance allows"
            )));
        }
    }
    let mut ws = accounts::insert_workspace(&txn, &name, owner.user_id).await?;
    if !p.allowance {
        let mut m: workspace::ActiveModel = ws.into();
        m.allowance = Set(false);
        ws = m.update(&txn).await?;
    }
    txn.commit().await?;
    Ok(ws)
}

pub async fn rename(db: &DatabaseConnection, id: Uuid, name: &str) -> Result<(), ServiceError> {
    let name = parse_workspace_name(name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let res = workspace::Entity::update_many()
        .col_expr(workspace::Column::Name, Expr::value(name))
        .col_expr(workspace::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(workspace::Column::Id.eq(id))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Err(ServiceError::NotFound);
    }
    Ok(())
}

/// The platform admin moves a workspace to another plan (audited in the same transaction).
pub async fn set_plan(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    id: Uuid,
    plan: Plan,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let res = workspace::Entity::update_many()
        .col_expr(workspace::Column::Plan, Expr::value(plan.as_str()))
        .col_expr(workspace::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(workspace::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(id),
            action: "plan.changed",
            detail: Some(plan.as_str().into()),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    // The plan decides BYOK: cached resolutions must see it.
    changes.publish(Change::workspace(Topic::Keys, id));
    Ok(())
}

pub async fn members(
    db: &DatabaseConnection,
    workspace_id: Uuid,
) -> Result<Vec<MemberRow>, ServiceError> {
    let rows = membership::Entity::find()
        .filter(membership::Column::WorkspaceId.eq(workspace_id))
        .all(db)
        .await?;
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(rows.iter().map(|m| m.user_id)))
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for u in users {
        if let Some(m) = rows.iter().find(|m| m.user_id == u.id) {
            out.push(MemberRow {
                user_id: u.id,
                email: u.email,
                display_name: u.display_name,
                role: role_of(&m.role)?,
            });
        }
    }
    out.sort_by(|a, b| a.role.cmp(&b.role).then(a.email.cmp(&b.email)));
    Ok(out)
}

/// The workspace's owners, their rows locked until the transaction ends (`FOR UPDATE` on
/// PostgreSQL; SQLite's write transactions are serial already). Two owners demoting or removing
/// each other at once then take turns, and the second sees the first's change: no write skew
/// can leave a workspace without an owner.
async fn lock_owners<C: ConnectionTrait>(db: &C, workspace_id: Uuid) -> Result<u64, ServiceError> {
    use sea_orm::QuerySelect;
    let owners = membership::Entity::find()
        .filter(membership::Column::WorkspaceId.eq(workspace_id))
        .filter(membership::Column::Role.eq(Role::Owner.as_str()))
        .lock_exclusive()
        .all(db)
        .await?;
    Ok(owners.len() as u64)
}

/// Records a member change in the transaction that makes it.
async fn audited<C: ConnectionTrait>(
    txn: &C,
    by: &By,
    workspace_id: Uuid,
    action: &str,
    detail: String,
) -> Result<(), ServiceError> {
    let event = Event {
        workspace_id: Some(workspace_id),
        action,
        detail: Some(detail),
        ..Default::default()
    };
    audit::record(txn, by, event).await
}

/// A user's email (for audit details), or their id if the row is gone.
async fn email_of<C: ConnectionTrait>(txn: &C, user_id: Uuid) -> Result<String, ServiceError> {
    Ok(user::Entity::find_by_id(user_id)
        .one(txn)
        .await?
        .map_or_else(|| user_id.to_string(), |u| u.email))
}

/// Changes a member's role. Refused if it would leave the workspace without an owner.
pub async fn change_role(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let owners = lock_owners(&txn, workspace_id).await?;
    let m = member(&txn, workspace_id, user_id).await?;
    if m.role == Role::Owner.as_str() && role != Role::Owner && owners <= 1 {
        return Err(ServiceError::Conflict(
            "a workspace needs at least one owner: make someone else owner first".into(),
        ));
    }
    set_role(&txn, m, role).await?;
    let detail = format!("{} is now {role}", email_of(&txn, user_id).await?);
    audited(&txn, by, workspace_id, "member.role_changed", detail).await?;
    txn.commit().await?;
    Ok(())
}

/// A member of the workspace, or `NotFound`.
async fn member(
    txn: &DatabaseTransaction,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<membership::Model, ServiceError> {
    membership::Entity::find_by_id((workspace_id, user_id))
        .one(txn)
        .await?
        .ok_or(ServiceError::NotFound)
}

async fn set_role(
    txn: &DatabaseTransaction,
    m: membership::Model,
    role: Role,
) -> Result<(), ServiceError> {
    let mut am: membership::ActiveModel = m.into();
    am.role = Set(role.as_str().into());
    am.update(txn).await?;
    Ok(())
}

/// Removes a member. Refused for the last owner.
pub async fn remove_member(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let owners = lock_owners(&txn, workspace_id).await?;
    let m = member(&txn, workspace_id, user_id).await?;
    if m.role == Role::Owner.as_str() && owners <= 1 {
        return Err(ServiceError::Conflict(
            "the last owner cannot be removed: transfer ownership first".into(),
        ));
    }
    membership::Entity::delete_by_id((workspace_id, user_id))
        .exec(&txn)
        .await?;
    let email = email_of(&txn, user_id).await?;
    audited(&txn, by, workspace_id, "member.removed", email).await?;
    txn.commit().await?;
    Ok(())
}

/// Makes `to` an owner and `from` an admin, in one transaction.
pub async fn transfer_ownership(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<(), ServiceError> {
    if from == to {
        return Err(ServiceError::Invalid("choose another member".into()));
    }
    let txn = crate::db::begin_write(db).await?;
    let target = member(&txn, workspace_id, to).await?;
    set_role(&txn, target, Role::Owner).await?;
    if let Some(current) = membership::Entity::find_by_id((workspace_id, from))
        .one(&txn)
        .await?
    {
        set_role(&txn, current, Role::Admin).await?;
    }
    let detail = format!("ownership transferred to {}", email_of(&txn, to).await?);
    audited(&txn, by, workspace_id, "owner.transferred", detail).await?;
    txn.commit().await?;
    Ok(())
}

/// Creates an invitation; returns its id and the link token (shown once; only its hash is kept).
pub async fn invite(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    email: &str,
    role: Role,
) -> Result<(Uuid, Zeroizing<String>), ServiceError> {
    let email = Email::parse(email).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let already = membership::Entity::find()
        .filter(membership::Column::WorkspaceId.eq(workspace_id))
        .filter(
            membership::Column::UserId.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(user::Column::Id)
                    .from(user::Entity)
                    .and_where(Expr::col(user::Column::Email).eq(email.as_str()))
                    .to_owned(),
            ),
        )
        .count(db)
        .await?;
    if already > 0 {
        return Err(ServiceError::Conflict(
            "this person is already a member".into(),
        ));
    }
    let token = crypto::random_token().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let now = Utc::now();
    let id = Uuid::now_v7();
    let txn = crate::db::begin_write(db).await?;
    invitation::ActiveModel {
        id: Set(id),
        workspace_id: Set(workspace_id),
        email: Set(email.as_str().into()),
        role: Set(role.as_str().into()),
        token_hash: Set(crypto::token_hash(&token)),
        created_by: Set(by.id),
        created_at: Set(now),
        expires_at: Set(now + INVITATION_TTL),
        accepted_at: Set(None),
        accepted_by: Set(None),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    let detail = format!("{} invited as {role}", email.as_str());
    audited(&txn, by, workspace_id, "member.invited", detail).await?;
    txn.commit().await?;
    Ok((id, token))
}

/// Open (not accepted, revoked or expired) invitations of a workspace.
pub async fn pending_invitations(
    db: &DatabaseConnection,
    workspace_id: Uuid,
) -> Result<Vec<invitation::Model>, ServiceError> {
    Ok(invitation::Entity::find()
        .filter(invitation::Column::WorkspaceId.eq(workspace_id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(invitation::Column::CreatedAt)
        .all(db)
        .await?)
}

pub async fn revoke_invitation(
    db: &DatabaseConnection,
    by: &By,
    workspace_id: Uuid,
    invitation_id: Uuid,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let res = invitation::Entity::update_many()
        .col_expr(invitation::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(invitation::Column::Id.eq(invitation_id))
        .filter(invitation::Column::WorkspaceId.eq(workspace_id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .exec(&txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(ServiceError::NotFound);
    }
    let detail = invitation_id.to_string();
    audited(&txn, by, workspace_id, "invitation.revoked", detail).await?;
    txn.commit().await?;
    Ok(())
}

/// What the invitation page shows before accepting: workspace, email, role. Unknown, used,
/// revoked and expired invitations all answer "not found".
pub async fn invitation_info(
    db: &DatabaseConnection,
    token: &str,
) -> Result<(invitation::Model, workspace::Model), ServiceError> {
    let inv = invitation::Entity::find()
        .filter(invitation::Column::TokenHash.eq(crypto::token_hash(token)))
        .one(db)
        .await?
        .filter(|i| i.accepted_at.is_none() && i.revoked_at.is_none() && i.expires_at > Utc::now())
        .ok_or(ServiceError::NotFound)?;
    let ws = get(db, inv.workspace_id).await?;
    Ok((inv, ws))
}

/// Accepts an invitation for `user_id` (single use: the first acceptance wins).
async fn accept_for<C: ConnectionTrait>(
    txn: &C,
    token: &str,
    user_id: Uuid,
    user_email: &str,
) -> Result<Uuid, ServiceError> {
    let inv = invitation::Entity::find()
        .filter(invitation::Column::TokenHash.eq(crypto::token_hash(token)))
        .one(txn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if inv.email != user_email {
        return Err(ServiceError::Forbidden);
    }
    let now = Utc::now();
    let claimed = invitation::Entity::update_many()
        .col_expr(invitation::Column::AcceptedAt, Expr::value(now))
        .col_expr(invitation::Column::AcceptedBy, Expr::value(user_id))
        .filter(invitation::Column::Id.eq(inv.id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(now))
        .exec(txn)
        .await?;
    if claimed.rows_affected != 1 {
        return Err(ServiceError::NotFound);
    }
    if membership::Entity::find_by_id((inv.workspace_id, user_id))
        .one(txn)
        .await?
        .is_some()
    {
        return Err(ServiceError::Conflict("you are already a member".into()));
    }
    membership::ActiveModel {
        workspace_id: Set(inv.workspace_id),
        user_id: Set(user_id),
        role: Set(inv.role.clone()),
        created_at: Set(now),
    }
    .insert(txn)
    .await?;
    let by = By {
        id: Some(user_id),
        email: user_email.to_string(),
    };
    audited(
        txn,
        &by,
        inv.workspace_id,
        "member.joined",
        user_email.into(),
    )
    .await?;
    Ok(inv.workspace_id)
}

/// A signed-in user accepts an invitation addressed to their email.
pub async fn accept_invitation(
    db: &DatabaseConnection,
    token: &str,
    who: &SessionUser,
) -> Result<Uuid, ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let ws = accept_for(&txn, token, who.user_id, &who.email).await?;
    txn.commit().await?;
    Ok(ws)
}

/// Someone without an account signs up through an invitation (its email becomes theirs).
pub async fn sign_up_with_invitation(
    db: &DatabaseConnection,
    guard: &accounts::SignInThrottle,
    client: Option<std::net::IpAddr>,
    token: &str,
    display_name: &str,
    password: &str,
) -> Result<user::Model, ServiceError> {
    guard.check("sign-up", client)?;
    let (inv, _) = invitation_info(db, token).await?;
    // Hashed before the transaction: argon2 never runs under the write lock.
    let account = accounts::NewAccount::prepare(guard, &inv.email, display_name, password).await?;
    let txn = crate::db::begin_write(db).await?;
    let user = account.insert(&txn, false).await?;
    accept_for(&txn, token, user.id, &user.email).await?;
    txn.commit().await?;
    Ok(user)
}

/// Every workspace with its member count, for the platform admin.
pub async fn list_all(
    db: &DatabaseConnection,
) -> Result<Vec<(workspace::Model, u64)>, ServiceError> {
    use sea_orm::QuerySelect;
    let all = workspace::Entity::find()
        .order_by_asc(workspace::Column::Name)
        .all(db)
        .await?;
    let counts: Vec<(Uuid, i64)> = membership::Entity::find()
        .select_only()
        .column(membership::Column::WorkspaceId)
        .column_as(Expr::col(membership::Column::UserId).count(), "n")
        .group_by(membership::Column::WorkspaceId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(all
        .into_iter()
        .map(|ws| {
            let n = counts
                .iter()
                .find(|(id, _)| *id == ws.id)
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
            (ws, n)
        })
        .collect())
}

/// How the dashboard names a workspace, with the viewer's role in it (`None`: a platform admin
/// looking in from outside).
pub fn summary(
    ws: &workspace::Model,
    role: Option<Role>,
) -> Result<keyward::dto::WorkspaceSummary, ServiceError> {
    Ok(keyward::dto::WorkspaceSummary {
        id: ws.id.to_string(),
        name: ws.name.clone(),
        slug: ws.slug.clone(),
        plan: ws.plan()?,
        role,
    })
}

/// The members page: members, open invitations, and whether the viewer may manage them.
pub async fn members_page(
    db: &DatabaseConnection,
    ok: &crate::auth::Authorized,
) -> Result<keyward::dto::MembersPage, ServiceError> {
    use keyward::dto::{InvitationView, MemberView};
    let ws = ok.workspace.id;
    let members = members(db, ws).await?;
    let invitations = pending_invitations(db, ws).await?;
    Ok(keyward::dto::MembersPage {
        workspace: summary(&ok.workspace, ok.actor.role)?,
        members: members
            .into_iter()
            .map(|m| MemberView {
                is_you: m.user_id == ok.user.user_id,
                user_id: m.user_id.to_string(),
                email: m.email,
                display_name: m.display_name,
                role: m.role,
            })
            .collect(),
        invitations: invitations
            .into_iter()
            .map(|i| {
                Ok(InvitationView {
                    id: i.id.to_string(),
                    role: i.role()?,
                    email: i.email,
                    expires_at: i.expires_at.to_rfc3339(),
                })
            })
            .collect::<Result<_, ServiceError>>()?,
        can_manage: keyward::policy::can(ok.actor, keyward::policy::Action::ManageMembers),
    })
}

/// What the invitation page shows before accepting.
pub async fn invitation_preview(
    db: &DatabaseConnection,
    token: &str,
) -> Result<keyward::dto::InvitationPreview, ServiceError> {
    let (inv, ws) = invitation_info(db, token).await?;
    Ok(keyward::dto::InvitationPreview {
        role: inv.role()?,
        workspace_name: ws.name,
        email: inv.email,
    })
}

/// Every workspace of the instance, for the platform admin's list.
pub async fn admin_rows(
    db: &DatabaseConnection,
) -> Result<Vec<keyward::dto::AdminWorkspaceRow>, ServiceError> {
    list_all(db)
        .await?
        .into_iter()
        .map(|(w, n)| {
            Ok(keyward::dto::AdminWorkspaceRow {
                id: w.id.to_string(),
                plan: w.plan()?,
                name: w.name,
                slug: w.slug,
                members: u32::try_from(n).unwrap_or(u32::MAX),
                created_at: w.created_at.to_rfc3339(),
            })
        })
        .collect()
}
