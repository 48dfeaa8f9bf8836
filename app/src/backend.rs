//! The seam between server functions and the server's service layer (SSR only).
//!
//! `keyward-app` must not depend on `keyward-server` (the wasm graph would pull in SeaORM), so
//! server functions reach the services through this trait. The server implements it and hands an
//! [`SharedBackend`] to Leptos as context for every request.

use crate::error::AppError;
use keyward::dto::{AdminWorkspaceRow, InvitationPreview, MembersPage, SessionState, SessionView};
use keyward::policy::{Plan, Role};
use keyward::system::SystemStatus;
use leptos::prelude::use_context;
use std::sync::Arc;

#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Reads (and counts) the instance status from the database.
    async fn system_status(&self) -> Result<SystemStatus, AppError>;

    // Every method below authenticates the request (session cookie) and authorizes it through
    // the server's one guard before doing anything.
    async fn session_state(&self) -> Result<SessionState, AppError>;
    async fn setup_instance(
        &self,
        email: String,
        display_name: String,
        password: String,
        workspace_name: String,
    ) -> Result<(), AppError>;
    async fn sign_in(&self, email: String, password: String) -> Result<(), AppError>;
    async fn sign_out(&self) -> Result<(), AppError>;
    async fn sign_out_everywhere(&self) -> Result<(), AppError>;
    async fn change_password(&self, current: String, new: String) -> Result<(), AppError>;
    async fn list_sessions(&self) -> Result<Vec<SessionView>, AppError>;
    async fn switch_workspace(&self, workspace_id: String) -> Result<(), AppError>;
    async fn create_workspace(&self, name: String) -> Result<(), AppError>;
    async fn rename_workspace(&self, workspace_id: String, name: String) -> Result<(), AppError>;
    async fn members(&self, workspace_id: String) -> Result<MembersPage, AppError>;
    async fn invite(
        &self,
        workspace_id: String,
        email: String,
        role: Role,
    ) -> Result<String, AppError>;
    async fn revoke_invitation(
        &self,
        workspace_id: String,
        invitation_id: String,
    ) -> Result<(), AppError>;
    async fn change_role(
        &self,
        workspace_id: String,
        user_id: String,
        role: Role,
    ) -> Result<(), AppError>;
    async fn remove_member(&self, workspace_id: String, user_id: String) -> Result<(), AppError>;
    async fn transfer_ownership(
        &self,
        workspace_id: String,
        user_id: String,
    ) -> Result<(), AppError>;
    async fn invitation_preview(&self, token: String) -> Result<InvitationPreview, AppError>;
    async fn accept_invitation(&self, token: String) -> Result<(), AppError>;
    async fn sign_up_with_invitation(
        &self,
        token: String,
        display_name: String,
        password: String,
    ) -> Result<(), AppError>;
    async fn set_plan(&self, workspace_id: String, plan: Plan) -> Result<(), AppError>;
    async fn all_workspaces(&self) -> Result<Vec<AdminWorkspaceRow>, AppError>;
    async fn sign_up(
        &self,
        email: String,
        display_name: String,
        password: String,
        workspace_name: String,
    ) -> Result<(), AppError>;
}

pub type SharedBackend = Arc<dyn Backend>;

/// The backend of the request being served.
pub fn backend() -> Result<SharedBackend, AppError> {
    use_context::<SharedBackend>().ok_or_else(|| {
        tracing::error!("no backend in the Leptos context; routes were registered without it");
        AppError::Internal
    })
}
