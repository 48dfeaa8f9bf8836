//! The seam between server functions and the server's service layer (SSR only).
//!
//! `keyward-app` must not depend on `keyward-server` (the wasm graph would pull in SeaORM), so
//! server functions reach the services through this trait. The server implements it and hands an
//! [`SharedBackend`] to Leptos as context for every request.

use crate::error::AppError;
use keyward::chat::{ChatPage, PlaygroundPage};
use keyward::credential::KeyInput;
use keyward::dto::{
    AdminWorkspaceRow, AuditFilter, AuditPage, ChatbotUpdate, ChatbotView, ChatbotsPage,
    InvitationPreview, KeyTestResult, KeyView, KeysPage, MembersPage, PlatformProviders,
    SessionState, SessionView, SignUpPreview,
};
use keyward::keys::FailurePolicy;
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
        token: String,
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
    async fn sign_up_preview(&self, token: String) -> Result<SignUpPreview, AppError>;
    async fn confirm_sign_up(&self, token: String) -> Result<(), AppError>;

    // Keys. `workspace_id` empty means the platform's keys (platform admins only).
    async fn keys_page(
        &self,
        workspace_id: String,
        chatbot_id: String,
    ) -> Result<KeysPage, AppError>;
    async fn test_new_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        provider: String,
        key: KeyInput,
        base_url: String,
    ) -> Result<KeyTestResult, AppError>;
    async fn add_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        provider: String,
        key: KeyInput,
        default_model: String,
        base_url: String,
    ) -> Result<KeyView, AppError>;
    async fn test_saved_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
    ) -> Result<KeyTestResult, AppError>;
    #[allow(clippy::too_many_arguments)]
    async fn replace_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
        provider: String,
        key: KeyInput,
        default_model: String,
        base_url: String,
    ) -> Result<KeyTestResult, AppError>;
    async fn set_key_enabled(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
        enabled: bool,
    ) -> Result<(), AppError>;
    async fn set_key_model(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
        model: String,
    ) -> Result<(), AppError>;
    async fn delete_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
    ) -> Result<(), AppError>;
    async fn set_failure_policy(
        &self,
        workspace_id: String,
        policy: FailurePolicy,
    ) -> Result<(), AppError>;
    async fn platform_providers(&self) -> Result<PlatformProviders, AppError>;
    async fn update_provider(
        &self,
        provider: String,
        base_url: String,
        default_model: String,
        byok_enabled: bool,
    ) -> Result<(), AppError>;
    async fn set_byok_plans(&self, plans: Vec<Plan>) -> Result<(), AppError>;
    async fn chatbots(&self, workspace_id: String) -> Result<ChatbotsPage, AppError>;
    #[allow(clippy::too_many_arguments)]
    async fn create_chatbot(
        &self,
        workspace_id: String,
        name: String,
        provider: String,
        model: String,
        system_prompt: String,
        greeting: String,
        public: bool,
    ) -> Result<ChatbotView, AppError>;
    async fn delete_chatbot(
        &self,
        workspace_id: String,
        chatbot_id: String,
    ) -> Result<(), AppError>;
    async fn update_chatbot(
        &self,
        workspace_id: String,
        chatbot_id: String,
        update: ChatbotUpdate,
    ) -> Result<ChatbotView, AppError>;
    /// The public chat page of a chatbot (public ones for anyone, private ones for members),
    /// with the visitor's latest conversation.
    async fn chat_page(
        &self,
        workspace_slug: String,
        chatbot_slug: String,
    ) -> Result<ChatPage, AppError>;
    /// The dashboard playground: chatbots and the models available to `chatbot_id` (empty: the
    /// workspace's own keys).
    async fn playground(
        &self,
        workspace_id: String,
        chatbot_id: String,
    ) -> Result<PlaygroundPage, AppError>;
    /// The audit log of a workspace, or (empty id) the instance-wide log.
    async fn audit_log(
        &self,
        workspace_id: String,
        filter: AuditFilter,
    ) -> Result<AuditPage, AppError>;
    /// The usage report of a workspace, or (empty id) of every workspace (platform admins).
    async fn usage(
        &self,
        workspace_id: String,
        from: String,
        to: String,
    ) -> Result<keyward::usage::UsageReport, AppError>;
    /// The platform admin's credits page.
    async fn credit_settings(&self) -> Result<keyward::usage::CreditSettings, AppError>;
    async fn set_byok_credit_policy(
        &self,
        policy: keyward::usage::ByokCreditPolicy,
    ) -> Result<(), AppError>;
    /// `credits`: a decimal amount per month.
    async fn set_plan_allowance(&self, plan: Plan, credits: String) -> Result<(), AppError>;
    /// Prices in US dollars per million tokens.
    async fn set_price(&self, price: keyward::usage::PriceInput) -> Result<(), AppError>;
    async fn delete_price(&self, provider: String, model: String) -> Result<(), AppError>;
    /// Adds (negative: removes) credits; returns the new balance in micro-credits.
    async fn top_up(
        &self,
        workspace_id: String,
        credits: String,
        note: String,
    ) -> Result<i64, AppError>;
    /// The API tokens page of a workspace (everyone reads; owners and admins manage).
    async fn api_tokens(
        &self,
        workspace_id: String,
    ) -> Result<keyward::tokens::ApiTokensPage, AppError>;
    async fn create_api_token(
        &self,
        workspace_id: String,
        new: keyward::tokens::NewApiToken,
    ) -> Result<keyward::tokens::CreatedApiToken, AppError>;
    async fn revoke_api_token(
        &self,
        workspace_id: String,
        token_id: String,
    ) -> Result<(), AppError>;
    /// Where bare model ids go on the public API (empty: automatic). Owners.
    async fn set_default_provider(
        &self,
        workspace_id: String,
        provider: String,
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
