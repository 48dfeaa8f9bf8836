//! The one authorization guard. Every server function and REST handler that touches a workspace
//! calls [`authorize`] (directly, or through [`crate::identity::Caller::access`], which checks an
//! API token first); it reads the caller's *current* membership from the database (so a demotion
//! or removal applies on the very next request) and asks the core policy, which alone decides.

use crate::entities::{membership, user, workspace};
use crate::error::ServiceError;
use crate::services::accounts::SessionUser;
use keyward::policy::{Action, Actor, Role, can};
use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

/// The outcome of a successful check: who acted, in which workspace, with which role.
#[derive(Clone, Debug)]
pub struct Authorized {
    pub user: SessionUser,
    pub workspace: workspace::Model,
    pub actor: Actor,
}

/// Checks that `who` may perform `action` in `workspace_id`.
///
/// * not signed in → `Unauthorized`
/// * the workspace does not exist, or the caller is neither a member nor a platform admin →
///   `NotFound` (another tenant's ids are indistinguishable from missing ones)
/// * a member without the permission → `Forbidden`
pub async fn authorize(
    db: &DatabaseConnection,
    who: Option<&SessionUser>,
    workspace_id: Uuid,
    action: Action,
) -> Result<Authorized, ServiceError> {
    let who = who.ok_or(ServiceError::Unauthorized)?;
    // The platform-admin flag is re-read too: a revoked admin loses it immediately.
    let fresh = user::Entity::find_by_id(who.user_id)
        .one(db)
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    let workspace = workspace::Entity::find_by_id(workspace_id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let role = membership::Entity::find_by_id((workspace_id, who.user_id))
        .one(db)
        .await?
        .and_then(|m| m.role.parse::<Role>().ok());
    let actor = Actor {
        signed_in: true,
        platform_admin: fresh.platform_admin,
        role,
    };
    if !can(actor, action) {
        return Err(if role.is_none() && !fresh.platform_admin {
            ServiceError::NotFound
        } else {
            ServiceError::Forbidden
        });
    }
    let mut user = who.clone();
    user.platform_admin = fresh.platform_admin;
    Ok(Authorized {
        user,
        workspace,
        actor,
    })
}

/// Instance-wide actions (platform settings): platform admins only.
pub async fn authorize_platform(
    db: &DatabaseConnection,
    who: Option<&SessionUser>,
) -> Result<SessionUser, ServiceError> {
    let who = who.ok_or(ServiceError::Unauthorized)?;
    let fresh = user::Entity::find_by_id(who.user_id)
        .one(db)
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    let actor = Actor {
        signed_in: true,
        platform_admin: fresh.platform_admin,
        role: None,
    };
    if can(actor, Action::ManagePlatform) {
        Ok(who.clone())
    } else {
        Err(ServiceError::Forbidden)
    }
}
