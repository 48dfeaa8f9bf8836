//! Server-function declarations. Each body is a thin adapter: reach the backend, call one
//! method (which authenticates, authorizes through the one guard, and runs the service), return
//! its typed result. Server-only code stays inside the bodies.

use crate::error::AppError;
use keyward::chat::{ChatPage, PlaygroundPage};
use keyward::credential::KeyInput;
use keyward::dto::{
    AdminWorkspaceRow, AuditPage, ChatbotView, ChatbotsPage, InvitationPreview, KeyTestResult,
    KeyView, KeysPage, MembersPage, PlatformProviders, SessionState, SessionView, SignUpPreview,
};
use keyward::keys::FailurePolicy;
use keyward::policy::{Plan, Role};
use keyward::system::SystemStatus;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use crate::backend::backend;

/// The instance status shown on the dashboard; a real database round trip.
#[server(client = CsrfClient)]
pub async fn get_system_status() -> Result<SystemStatus, AppError> {
    backend()?.system_status().await
}

/// Who is looking: whether the instance needs setting up, and the signed-in user if any.
#[server(client = CsrfClient)]
pub async fn get_session_state() -> Result<SessionState, AppError> {
    backend()?.session_state().await
}

/// First run: creates the platform admin, their first workspace, and signs them in.
#[server(client = CsrfClient)]
pub async fn setup_instance(
    token: String,
    email: String,
    display_name: String,
    password: String,
    workspace_name: String,
) -> Result<(), AppError> {
    backend()?
        .setup_instance(token, email, display_name, password, workspace_name)
        .await
}

#[server(client = CsrfClient)]
pub async fn sign_in(email: String, password: String) -> Result<(), AppError> {
    backend()?.sign_in(email, password).await
}

#[server(client = CsrfClient)]
pub async fn sign_out() -> Result<(), AppError> {
    backend()?.sign_out().await
}

/// Ends every session of the signed-in user, this one included.
#[server(client = CsrfClient)]
pub async fn sign_out_everywhere() -> Result<(), AppError> {
    backend()?.sign_out_everywhere().await
}

#[server(client = CsrfClient)]
pub async fn change_password(current: String, new_password: String) -> Result<(), AppError> {
    backend()?.change_password(current, new_password).await
}

#[server(client = CsrfClient)]
pub async fn list_sessions() -> Result<Vec<SessionView>, AppError> {
    backend()?.list_sessions().await
}

#[server(client = CsrfClient)]
pub async fn switch_workspace(workspace_id: String) -> Result<(), AppError> {
    backend()?.switch_workspace(workspace_id).await
}

#[server(client = CsrfClient)]
pub async fn create_workspace(name: String) -> Result<(), AppError> {
    backend()?.create_workspace(name).await
}

#[server(client = CsrfClient)]
pub async fn rename_workspace(workspace_id: String, name: String) -> Result<(), AppError> {
    backend()?.rename_workspace(workspace_id, name).await
}

#[server(client = CsrfClient)]
pub async fn get_members(workspace_id: String) -> Result<MembersPage, AppError> {
    backend()?.members(workspace_id).await
}

/// Returns the invitation link's path (`/invite/TOKEN`), shown once to the owner.
#[server(client = CsrfClient)]
pub async fn invite_member(
    workspace_id: String,
    email: String,
    role: Role,
) -> Result<String, AppError> {
    backend()?.invite(workspace_id, email, role).await
}

#[server(client = CsrfClient)]
pub async fn revoke_invitation(
    workspace_id: String,
    invitation_id: String,
) -> Result<(), AppError> {
    backend()?
        .revoke_invitation(workspace_id, invitation_id)
        .await
}

#[server(client = CsrfClient)]
pub async fn change_member_role(
    workspace_id: String,
    user_id: String,
    role: Role,
) -> Result<(), AppError> {
    backend()?.change_role(workspace_id, user_id, role).await
}

#[server(client = CsrfClient)]
pub async fn remove_member(workspace_id: String, user_id: String) -> Result<(), AppError> {
    backend()?.remove_member(workspace_id, user_id).await
}

#[server(client = CsrfClient)]
pub async fn transfer_ownership(workspace_id: String, user_id: String) -> Result<(), AppError> {
    backend()?.transfer_ownership(workspace_id, user_id).await
}

#[server(client = CsrfClient)]
pub async fn get_invitation(token: String) -> Result<InvitationPreview, AppError> {
    backend()?.invitation_preview(token).await
}

/// Accepts an invitation as the signed-in user.
#[server(client = CsrfClient)]
pub async fn accept_invitation(token: String) -> Result<(), AppError> {
    backend()?.accept_invitation(token).await
}

/// Creates an account through an invitation and signs it in.
#[server(client = CsrfClient)]
pub async fn sign_up_with_invitation(
    token: String,
    display_name: String,
    password: String,
) -> Result<(), AppError> {
    backend()?
        .sign_up_with_invitation(token, display_name, password)
        .await
}

/// Every workspace on the instance (platform admins).
#[server(client = CsrfClient)]
pub async fn list_all_workspaces() -> Result<Vec<AdminWorkspaceRow>, AppError> {
    backend()?.all_workspaces().await
}

/// Open sign-up, when the operator enabled it: mails a link that creates the account (or, for
/// an address that has one, a note to sign in). The answer is the same either way.
#[server(client = CsrfClient)]
pub async fn sign_up(
    email: String,
    display_name: String,
    password: String,
    workspace_name: String,
) -> Result<(), AppError> {
    backend()?
        .sign_up(email, display_name, password, workspace_name)
        .await
}

/// The account a sign-up link would create.
#[server(client = CsrfClient)]
pub async fn get_sign_up(token: String) -> Result<SignUpPreview, AppError> {
    backend()?.sign_up_preview(token).await
}

/// Opens a sign-up link: creates the account and its workspace, and signs it in.
#[server(client = CsrfClient)]
pub async fn confirm_sign_up(token: String) -> Result<(), AppError> {
    backend()?.confirm_sign_up(token).await
}

/// Platform admins set a workspace's plan.
#[server(client = CsrfClient)]
pub async fn set_workspace_plan(workspace_id: String, plan: Plan) -> Result<(), AppError> {
    backend()?.set_plan(workspace_id, plan).await
}

// Keys. An empty `workspace_id` means the platform's keys (platform admins only).

/// The keys page of a workspace (or the platform, or — with `chatbot_id` — one chatbot):
/// every provider and this scope's masked key.
#[server(client = CsrfClient)]
pub async fn get_keys(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
) -> Result<KeysPage, AppError> {
    backend()?.keys_page(workspace_id, chatbot_id).await
}

/// Tests a key before it is saved: format check, then a live call to the provider.
#[server(client = CsrfClient)]
pub async fn test_new_key(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
    provider: String,
    key: KeyInput,
    base_url: String,
) -> Result<KeyTestResult, AppError> {
    backend()?
        .test_new_key(workspace_id, chatbot_id, provider, key, base_url)
        .await
}

#[server(client = CsrfClient)]
pub async fn add_key(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
    provider: String,
    key: KeyInput,
    default_model: String,
    base_url: String,
) -> Result<KeyView, AppError> {
    backend()?
        .add_key(
            workspace_id,
            chatbot_id,
            provider,
            key,
            default_model,
            base_url,
        )
        .await
}

#[server(client = CsrfClient)]
pub async fn test_saved_key(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
    key_id: String,
) -> Result<KeyTestResult, AppError> {
    backend()?
        .test_saved_key(workspace_id, chatbot_id, key_id)
        .await
}

/// Replaces a key after the new one passed a live test; otherwise nothing changes.
#[server(client = CsrfClient)]
pub async fn replace_key(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
    key_id: String,
    provider: String,
    key: KeyInput,
    default_model: String,
    base_url: String,
) -> Result<KeyTestResult, AppError> {
    backend()?
        .replace_key(
            workspace_id,
            chatbot_id,
            key_id,
            provider,
            key,
            default_model,
            base_url,
        )
        .await
}

#[server(client = CsrfClient)]
pub async fn set_key_enabled(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
    key_id: String,
    enabled: bool,
) -> Result<(), AppError> {
    backend()?
        .set_key_enabled(workspace_id, chatbot_id, key_id, enabled)
        .await
}

#[server(client = CsrfClient)]
pub async fn set_key_model(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
    key_id: String,
    model: String,
) -> Result<(), AppError> {
    backend()?
        .set_key_model(workspace_id, chatbot_id, key_id, model)
        .await
}

#[server(client = CsrfClient)]
pub async fn delete_key(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
    key_id: String,
) -> Result<(), AppError> {
    backend()?
        .delete_key(workspace_id, chatbot_id, key_id)
        .await
}

#[server(client = CsrfClient)]
pub async fn set_failure_policy(
    workspace_id: String,
    policy: FailurePolicy,
) -> Result<(), AppError> {
    backend()?.set_failure_policy(workspace_id, policy).await
}

#[server(client = CsrfClient)]
pub async fn get_platform_providers() -> Result<PlatformProviders, AppError> {
    backend()?.platform_providers().await
}

/// The platform admin's provider settings: base URL and default model overrides (empty for the
/// catalogue default) and the BYOK switch.
#[server(client = CsrfClient)]
pub async fn update_provider(
    provider: String,
    base_url: String,
    default_model: String,
    byok_enabled: bool,
) -> Result<(), AppError> {
    backend()?
        .update_provider(provider, base_url, default_model, byok_enabled)
        .await
}

/// The plans allowed to bring their own keys, comma-separated (`pro,business`).
#[server(client = CsrfClient)]
pub async fn set_byok_plans(plans: String) -> Result<(), AppError> {
    let mut parsed = Vec::new();
    for p in plans.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        parsed.push(
            p.parse::<Plan>()
                .map_err(|e| AppError::Invalid(e.to_string()))?,
        );
    }
    backend()?.set_byok_plans(parsed).await
}

/// The audit log of a workspace (or, with an empty id, the instance-wide log), filtered.
#[server(client = CsrfClient)]
pub async fn get_audit_log(
    workspace_id: String,
    actor: String,
    action: String,
    provider: String,
    from: String,
    to: String,
) -> Result<AuditPage, AppError> {
    let some = |s: String| Some(s).filter(|s| !s.trim().is_empty());
    let filter = keyward::dto::AuditFilter {
        actor: some(actor),
        action: some(action),
        provider: some(provider),
        from: some(from),
        to: some(to),
    };
    backend()?.audit_log(workspace_id, filter).await
}

/// The chatbots of a workspace (owners and admins manage them; everyone else reads).
#[server(client = CsrfClient)]
pub async fn get_chatbots(workspace_id: String) -> Result<ChatbotsPage, AppError> {
    backend()?.chatbots(workspace_id).await
}

#[server(client = CsrfClient)]
pub async fn create_chatbot(
    workspace_id: String,
    name: String,
    provider: String,
    #[server(default)] model: String,
    #[server(default)] system_prompt: String,
    #[server(default)] greeting: String,
    #[server(default)] public: bool,
) -> Result<ChatbotView, AppError> {
    backend()?
        .create_chatbot(
            workspace_id,
            name,
            provider,
            model,
            system_prompt,
            greeting,
            public,
        )
        .await
}

#[server(client = CsrfClient)]
pub async fn delete_chatbot(workspace_id: String, chatbot_id: String) -> Result<(), AppError> {
    backend()?.delete_chatbot(workspace_id, chatbot_id).await
}

/// Changes a chatbot's settings (owners and admins).
#[server(client = CsrfClient)]
pub async fn update_chatbot(
    workspace_id: String,
    chatbot_id: String,
    update: keyward::dto::ChatbotUpdate,
) -> Result<ChatbotView, AppError> {
    backend()?
        .update_chatbot(workspace_id, chatbot_id, update)
        .await
}

/// The public chat page's data: the chatbot, its models, the visitor's conversation.
#[server(client = CsrfClient)]
pub async fn get_chat_page(
    workspace_slug: String,
    chatbot_slug: String,
) -> Result<ChatPage, AppError> {
    backend()?.chat_page(workspace_slug, chatbot_slug).await
}

/// The dashboard playground's data for a chatbot (empty: the workspace's own keys).
#[server(client = CsrfClient)]
pub async fn get_playground(
    workspace_id: String,
    #[server(default)] chatbot_id: String,
) -> Result<PlaygroundPage, AppError> {
    backend()?.playground(workspace_id, chatbot_id).await
}

/// The client every server function uses: the browser's `fetch` plus the CSRF proof header.
pub struct CsrfClient;

mod csrf_client {
    use super::CsrfClient;
    use keyward::http::CSRF_HEADER;
    use leptos::server_fn::client::Client;
    use leptos::server_fn::client::browser::BrowserClient;
    use leptos::server_fn::error::FromServerFnError;
    use leptos::server_fn::request::browser::BrowserRequest;
    use leptos::server_fn::response::browser::BrowserResponse;
    use std::future::Future;

    impl<E, I, O> Client<E, I, O> for CsrfClient
    where
        E: FromServerFnError,
        I: FromServerFnError,
        O: FromServerFnError,
    {
        type Request = BrowserRequest;
        type Response = BrowserResponse;

        fn send(req: Self::Request) -> impl Future<Output = Result<Self::Response, E>> + Send {
            req.headers().set(CSRF_HEADER, "1");
            <BrowserClient as Client<E, I, O>>::send(req)
        }

        fn open_websocket(
            path: &str,
        ) -> impl Future<
            Output = Result<
                (
                    impl futures::Stream<Item = Result<bytes::Bytes, bytes::Bytes>> + Send + 'static,
                    impl futures::Sink<bytes::Bytes> + Send + 'static,
                ),
                E,
            >,
        > + Send {
            <BrowserClient as Client<E, I, O>>::open_websocket(path)
        }

        fn spawn(future: impl Future<Output = ()> + Send + 'static) {
            <BrowserClient as Client<E, I, O>>::spawn(future)
        }
    }
}

// Usage and credits.

/// The usage report of a workspace (or, with an empty id, of every workspace) for a date range
/// (`YYYY-MM-DD`, both ends included; empty: the last 30 days).
#[server(client = CsrfClient)]
pub async fn get_usage(
    workspace_id: String,
    #[server(default)] from: String,
    #[server(default)] to: String,
) -> Result<keyward::usage::UsageReport, AppError> {
    backend()?.usage(workspace_id, from, to).await
}

#[server(client = CsrfClient)]
pub async fn get_credit_settings() -> Result<keyward::usage::CreditSettings, AppError> {
    backend()?.credit_settings().await
}

#[server(client = CsrfClient)]
pub async fn set_byok_credit_policy(
    policy: keyward::usage::ByokCreditPolicy,
) -> Result<(), AppError> {
    backend()?.set_byok_credit_policy(policy).await
}

/// A plan's monthly credit allowance, as a decimal number of credits.
#[server(client = CsrfClient)]
pub async fn set_plan_allowance(plan: Plan, credits: String) -> Result<(), AppError> {
    backend()?.set_plan_allowance(plan, credits).await
}

/// Adds or changes a row of the price table (US dollars per million tokens).
#[server(client = CsrfClient)]
pub async fn set_price(price: keyward::usage::PriceInput) -> Result<(), AppError> {
    backend()?.set_price(price).await
}

#[server(client = CsrfClient)]
pub async fn delete_price(provider: String, model: String) -> Result<(), AppError> {
    backend()?.delete_price(provider, model).await
}

/// Adds credits to a workspace (a negative amount removes them); returns the new balance.
#[server(client = CsrfClient)]
pub async fn top_up_credits(
    workspace_id: String,
    credits: String,
    #[server(default)] note: String,
) -> Result<i64, AppError> {
    backend()?.top_up(workspace_id, credits, note).await
}

/// The API tokens of a workspace (everyone reads; owners and admins manage).
#[server(client = CsrfClient)]
pub async fn get_api_tokens(
    workspace_id: String,
) -> Result<keyward::tokens::ApiTokensPage, AppError> {
    backend()?.api_tokens(workspace_id).await
}

/// Creates a token; the answer holds its secret, shown this once.
#[server(client = CsrfClient)]
pub async fn create_api_token(
    workspace_id: String,
    new: keyward::tokens::NewApiToken,
) -> Result<keyward::tokens::CreatedApiToken, AppError> {
    backend()?.create_api_token(workspace_id, new).await
}

#[server(client = CsrfClient)]
pub async fn revoke_api_token(workspace_id: String, token_id: String) -> Result<(), AppError> {
    backend()?.revoke_api_token(workspace_id, token_id).await
}

/// Where bare model ids go on the public API (empty: automatic).
#[server(client = CsrfClient)]
pub async fn set_default_provider(
    workspace_id: String,
    #[server(default)] provider: String,
) -> Result<(), AppError> {
    backend()?
        .set_default_provider(workspace_id, provider)
        .await
}
