//! Server-function declarations. Each body is a thin adapter over the service layer: identify
//! the caller ([`crate::ssr::Cx`]), authorize through the one guard, call one service, and let
//! `?` turn its error into an [`AppError`]. Server-only code is compiled under `ssr` only.

use crate::error::AppError;
use keyward::chat::{ChatPage, PlaygroundPage};
use keyward::credential::KeyInput;
use keyward::dto::{
    AdminWorkspaceRow, AuditPage, ChatbotView, ChatbotsPage, InvitationPreview, KeyTestResult,
    KeyView, KeysPage, MembersPage, PlatformProviders, SessionState, SessionView, SignUpPreview,
};
use keyward::ids::{ChatbotId, KeyId, KeyScope, WorkspaceId};
use keyward::keys::FailurePolicy;
use keyward::policy::{Plan, Role};
use keyward::system::SystemStatus;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use crate::ssr::{By, Cx, id};
#[cfg(feature = "ssr")]
use keyward::policy::Action;
#[cfg(feature = "ssr")]
use keyward_backend::services::{
    self as svc, accounts, api_tokens, audit, catalogue, chatbots, credits, keys, keys::NewKey,
    limits, playground, routing, sign_up, workspaces,
};
#[cfg(feature = "ssr")]
use secrecy::SecretString;
#[cfg(feature = "ssr")]
use zeroize::Zeroizing;

/// The instance status shown on the dashboard; a real database round trip.
#[server(client = CsrfClient)]
pub async fn get_system_status() -> Result<SystemStatus, AppError> {
    let cx = Cx::get().await?;
    // Any signed-in user; it writes (the check counter), so never anonymous.
    cx.require().await?;
    Ok(svc::system::status(&cx.state.db).await?)
}

/// Who is looking: whether the instance needs setting up, and the signed-in user if any.
#[server(client = CsrfClient)]
pub async fn get_session_state() -> Result<SessionState, AppError> {
    let cx = Cx::get().await?;
    let open = cx.state.sign_ups.enabled();
    Ok(svc::session::state(&cx.state.db, open, cx.user().await?).await?)
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
    let cx = Cx::get().await?;
    let password = Zeroizing::new(password);
    let form = accounts::SetupForm {
        email: &email,
        display_name: &display_name,
        password: &password,
        workspace_name: &workspace_name,
    };
    let (db, guard) = (&cx.state.db, &cx.state.sign_in_throttle);
    accounts::setup_with_token(db, guard, cx.caller.ip(), &token, form).await?;
    cx.sign_in(&email, &password).await
}

#[server(client = CsrfClient)]
pub async fn sign_in(email: String, password: String) -> Result<(), AppError> {
    let password = Zeroizing::new(password);
    Cx::get().await?.sign_in(&email, &password).await
}

#[server(client = CsrfClient)]
pub async fn sign_out() -> Result<(), AppError> {
    let cx = Cx::get().await?;
    if let Some(token) = cx.caller.session_token() {
        accounts::sign_out(&cx.state.db, token).await?;
    }
    cx.clear_session();
    Ok(())
}

/// Ends every session of the signed-in user, this one included.
#[server(client = CsrfClient)]
pub async fn sign_out_everywhere() -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let who = cx.require().await?;
    accounts::sign_out_everywhere(&cx.state.db, who.user_id, None).await?;
    cx.clear_session();
    Ok(())
}

#[server(client = CsrfClient)]
pub async fn change_password(current: String, new_password: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let (current, new) = (Zeroizing::new(current), Zeroizing::new(new_password));
    let guard = &cx.state.sign_in_throttle;
    Ok(accounts::change_password(&cx.state.db, guard, cx.require().await?, &current, &new).await?)
}

#[server(client = CsrfClient)]
pub async fn list_sessions() -> Result<Vec<SessionView>, AppError> {
    let cx = Cx::get().await?;
    Ok(svc::session::sessions(&cx.state.db, cx.require().await?).await?)
}

#[server(client = CsrfClient)]
pub async fn switch_workspace(workspace_id: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    Ok(accounts::switch_workspace(&cx.state.db, cx.require().await?, id(&workspace_id)?).await?)
}

#[server(client = CsrfClient)]
pub async fn create_workspace(name: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let (db, who) = (&cx.state.db, cx.require().await?);
    let ws = workspaces::create(db, who, &name).await?;
    Ok(accounts::switch_workspace(db, who, ws.id).await?)
}

#[server(client = CsrfClient)]
pub async fn rename_workspace(workspace_id: String, name: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageMembers).await?;
    Ok(workspaces::rename(&cx.state.db, ok.workspace.id, &name).await?)
}

#[server(client = CsrfClient)]
pub async fn get_members(workspace_id: String) -> Result<MembersPage, AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ViewMembers).await?;
    Ok(workspaces::members_page(&cx.state.db, &ok).await?)
}

/// Returns the invitation link's path (`/invite/TOKEN`), shown once to the owner.
#[server(client = CsrfClient)]
pub async fn invite_member(
    workspace_id: String,
    email: String,
    role: Role,
) -> Result<String, AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageMembers).await?;
    let by = By::user(&ok.user);
    let (_, token) = workspaces::invite(&cx.state.db, &by, ok.workspace.id, &email, role).await?;
    Ok(format!("/invite/{}", token.as_str()))
}

#[server(client = CsrfClient)]
pub async fn revoke_invitation(
    workspace_id: String,
    invitation_id: String,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageMembers).await?;
    let (by, invitation) = (By::user(&ok.user), id(&invitation_id)?);
    Ok(workspaces::revoke_invitation(&cx.state.db, &by, ok.workspace.id, invitation).await?)
}

#[server(client = CsrfClient)]
pub async fn change_member_role(
    workspace_id: String,
    user_id: String,
    role: Role,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageMembers).await?;
    let (by, user) = (By::user(&ok.user), id(&user_id)?);
    Ok(workspaces::change_role(&cx.state.db, &by, ok.workspace.id, user, role).await?)
}

#[server(client = CsrfClient)]
pub async fn remove_member(workspace_id: String, user_id: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageMembers).await?;
    let (by, user) = (By::user(&ok.user), id(&user_id)?);
    Ok(workspaces::remove_member(&cx.state.db, &by, ok.workspace.id, user).await?)
}

#[server(client = CsrfClient)]
pub async fn transfer_ownership(workspace_id: String, user_id: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageMembers).await?;
    let (by, to) = (By::user(&ok.user), id(&user_id)?);
    let (ws, from) = (ok.workspace.id, ok.user.user_id);
    Ok(workspaces::transfer_ownership(&cx.state.db, &by, ws, from, to).await?)
}

#[server(client = CsrfClient)]
pub async fn get_invitation(token: String) -> Result<InvitationPreview, AppError> {
    let cx = Cx::get().await?;
    Ok(workspaces::invitation_preview(&cx.state.db, &token).await?)
}

/// Accepts an invitation as the signed-in user.
#[server(client = CsrfClient)]
pub async fn accept_invitation(token: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let (db, who) = (&cx.state.db, cx.require().await?);
    let ws = workspaces::accept_invitation(db, &token, who).await?;
    Ok(accounts::switch_workspace(db, who, ws).await?)
}

/// Creates an account through an invitation and signs it in.
#[server(client = CsrfClient)]
pub async fn sign_up_with_invitation(
    token: String,
    display_name: String,
    password: String,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let password = Zeroizing::new(password);
    let (db, guard, ip) = (&cx.state.db, &cx.state.sign_in_throttle, cx.caller.ip());
    let user = workspaces::sign_up_with_invitation(db, guard, ip, &token, &display_name, &password)
        .await?;
    cx.sign_in(&user.email, &password).await
}

/// Every workspace on the instance (platform admins).
#[server(client = CsrfClient)]
pub async fn list_all_workspaces() -> Result<Vec<AdminWorkspaceRow>, AppError> {
    let cx = Cx::get().await?;
    cx.platform_admin().await?;
    Ok(workspaces::admin_rows(&cx.state.db).await?)
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
    let cx = Cx::get().await?;
    let password = Zeroizing::new(password);
    let form = sign_up::SignUpForm {
        email: &email,
        display_name: &display_name,
        password: &password,
        workspace_name: &workspace_name,
    };
    let s = &cx.state;
    Ok(sign_up::request(
        &s.db,
        &s.sign_in_throttle,
        &s.sign_ups,
        cx.caller.ip(),
        form,
    )
    .await?)
}

/// The account a sign-up link would create.
#[server(client = CsrfClient)]
pub async fn get_sign_up(token: String) -> Result<SignUpPreview, AppError> {
    let cx = Cx::get().await?;
    let (email, workspace_name) = sign_up::preview(&cx.state.db, &token).await?;
    Ok(SignUpPreview {
        email,
        workspace_name,
    })
}

/// Opens a sign-up link: creates the account and its workspace, and signs it in.
#[server(client = CsrfClient)]
pub async fn confirm_sign_up(token: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ua = cx.caller.user_agent.as_deref();
    let session = sign_up::confirm(&cx.state.db, &token, ua).await?;
    cx.start_session(&session.token);
    Ok(())
}

/// Platform admins set a workspace's plan.
#[server(client = CsrfClient)]
pub async fn set_workspace_plan(workspace_id: String, plan: Plan) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let (s, ws) = (&cx.state, id(&workspace_id)?);
    Ok(workspaces::set_plan(&s.db, &s.changes, &by, ws, plan).await?)
}

// Keys. An empty `workspace_id` means the platform's keys (platform admins only).

/// The keys page of a workspace (or the platform, or — with `chatbot_id` — one chatbot):
/// every provider and this scope's masked key.
#[server(client = CsrfClient)]
pub async fn get_keys(scope: KeyScope) -> Result<KeysPage, AppError> {
    let cx = Cx::get().await?;
    let (_, scope, ok) = cx.key_scope(scope, Action::ViewKeys).await?;
    Ok(keys::page_for(&cx.state.db, scope, ok.as_ref()).await?)
}

/// Tests a key before it is saved: format check, then a live call to the provider.
#[server(client = CsrfClient)]
pub async fn test_new_key(
    scope: KeyScope,
    provider: String,
    key: KeyInput,
    base_url: String,
) -> Result<KeyTestResult, AppError> {
    let cx = Cx::get().await?;
    let key = SecretString::from(key.into_inner());
    let (_, scope, _) = cx.key_scope(scope, Action::ManageKeys).await?;
    let s = &cx.state;
    s.key_test(scope.workspace_id())?;
    Ok(keys::test_unsaved(&s.db, &s.gateway, &provider, &key, &base_url).await?)
}

#[server(client = CsrfClient)]
pub async fn add_key(
    scope: KeyScope,
    provider: String,
    key: KeyInput,
    default_model: String,
    base_url: String,
) -> Result<KeyView, AppError> {
    let cx = Cx::get().await?;
    let key = SecretString::from(key.into_inner());
    let (by, scope, _) = cx.key_scope(scope, Action::ManageKeys).await?;
    cx.state.key_test(scope.workspace_id())?;
    let new = NewKey {
        provider,
        key,
        default_model,
        base_url,
    };
    Ok(keys::add(cx.state.key_deps(), &by, scope, new).await?)
}

#[server(client = CsrfClient)]
pub async fn test_saved_key(scope: KeyScope, key_id: KeyId) -> Result<KeyTestResult, AppError> {
    let cx = Cx::get().await?;
    let (by, scope, _) = cx.key_scope(scope, Action::ManageKeys).await?;
    cx.state.key_test(scope.workspace_id())?;
    Ok(keys::test_saved(cx.state.key_deps(), &by, scope, key_id.0).await?)
}

/// Replaces a key after the new one passed a live test; otherwise nothing changes.
#[server(client = CsrfClient)]
pub async fn replace_key(
    scope: KeyScope,
    key_id: KeyId,
    provider: String,
    key: KeyInput,
    default_model: String,
    base_url: String,
) -> Result<KeyTestResult, AppError> {
    let cx = Cx::get().await?;
    let key = SecretString::from(key.into_inner());
    let (by, scope, _) = cx.key_scope(scope, Action::ManageKeys).await?;
    cx.state.key_test(scope.workspace_id())?;
    let new = NewKey {
        provider,
        key,
        default_model,
        base_url,
    };
    let key_id = key_id.0;
    Ok(keys::replace(cx.state.key_deps(), &by, scope, key_id, new).await?)
}

#[server(client = CsrfClient)]
pub async fn set_key_enabled(
    scope: KeyScope,
    key_id: KeyId,
    enabled: bool,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let (by, scope, _) = cx.key_scope(scope, Action::ManageKeys).await?;
    let (s, key) = (&cx.state, key_id.0);
    Ok(keys::set_enabled(&s.db, &s.changes, &by, scope, key, enabled).await?)
}

#[server(client = CsrfClient)]
pub async fn set_key_model(scope: KeyScope, key_id: KeyId, model: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let (by, scope, _) = cx.key_scope(scope, Action::ManageKeys).await?;
    let (s, key) = (&cx.state, key_id.0);
    Ok(keys::set_default_model(&s.db, &s.changes, &by, scope, key, &model).await?)
}

#[server(client = CsrfClient)]
pub async fn delete_key(scope: KeyScope, key_id: KeyId) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let (by, scope, _) = cx.key_scope(scope, Action::ManageKeys).await?;
    let (s, key) = (&cx.state, key_id.0);
    Ok(keys::delete(&s.db, &s.changes, &by, scope, key).await?)
}

#[server(client = CsrfClient)]
pub async fn set_failure_policy(
    workspace_id: String,
    policy: FailurePolicy,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageKeys).await?;
    let (s, by) = (&cx.state, By::user(&ok.user));
    Ok(routing::set_failure_policy(&s.db, &s.changes, &by, ok.workspace.id, policy).await?)
}

#[server(client = CsrfClient)]
pub async fn get_platform_providers() -> Result<PlatformProviders, AppError> {
    let cx = Cx::get().await?;
    cx.platform_admin().await?;
    Ok(catalogue::platform_providers(&cx.state.db).await?)
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
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let change = catalogue::ProviderChange {
        base_url,
        default_model,
        byok_enabled,
    };
    let s = &cx.state;
    Ok(catalogue::update_provider(&s.db, &s.changes, &s.gateway, &by, &provider, change).await?)
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
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    Ok(catalogue::set_byok_plans(&cx.state.db, &cx.state.changes, &by, &parsed).await?)
}

/// The audit log of a workspace (or, with none, the instance-wide log), filtered.
#[server(client = CsrfClient)]
pub async fn get_audit_log(
    #[server(default)] workspace: Option<WorkspaceId>,
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
    let cx = Cx::get().await?;
    let scope = workspace.map_or(KeyScope::Platform, KeyScope::Workspace);
    let (_, scope, _) = cx.key_scope(scope, Action::ViewAudit).await?;
    Ok(audit::list(&cx.state.db, scope.workspace_id(), &filter).await?)
}

/// The chatbots of a workspace (owners and admins manage them; everyone else reads).
#[server(client = CsrfClient)]
pub async fn get_chatbots(workspace_id: String) -> Result<ChatbotsPage, AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ViewKeys).await?;
    Ok(chatbots::page(&cx.state.db, &ok).await?)
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
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageChatbots).await?;
    let new = chatbots::NewChatbot {
        name,
        provider,
        model,
        system_prompt,
        greeting,
        public,
    };
    let by = By::user(&ok.user);
    let bot = chatbots::create(&cx.state.db, &by, ok.workspace.id, new).await?;
    Ok(chatbots::view(&bot))
}

#[server(client = CsrfClient)]
pub async fn delete_chatbot(workspace_id: String, chatbot_id: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageChatbots).await?;
    let (by, bot) = (By::user(&ok.user), id(&chatbot_id)?);
    // Deleting a chatbot that holds keys of its own takes the right to manage keys.
    let keys = keyward::policy::can(ok.actor, Action::ManageKeys);
    let s = &cx.state;
    Ok(chatbots::delete(&s.db, &s.changes, &by, ok.workspace.id, bot, keys).await?)
}

/// Changes a chatbot's settings (owners and admins).
#[server(client = CsrfClient)]
pub async fn update_chatbot(
    workspace_id: String,
    chatbot_id: String,
    update: keyward::dto::ChatbotUpdate,
) -> Result<ChatbotView, AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageChatbots).await?;
    let (by, bot) = (By::user(&ok.user), id(&chatbot_id)?);
    let row = chatbots::update(&cx.state.db, &by, ok.workspace.id, bot, update).await?;
    Ok(chatbots::view(&row))
}

/// The public chat page's data: the chatbot, its models, the visitor's conversation.
#[server(client = CsrfClient)]
pub async fn get_chat_page(
    workspace_slug: String,
    chatbot_slug: String,
) -> Result<ChatPage, AppError> {
    let cx = Cx::get().await?;
    let slugs = (workspace_slug.as_str(), chatbot_slug.as_str());
    let s = &cx.state;
    Ok(playground::chat_page(&s.chat, &s.db, slugs, &cx.caller).await?)
}

/// The dashboard playground's data for a chatbot (none: the workspace's own keys).
#[server(client = CsrfClient)]
pub async fn get_playground(
    workspace: WorkspaceId,
    #[server(default)] chatbot: Option<ChatbotId>,
) -> Result<PlaygroundPage, AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard_id(workspace, Action::Chat).await?;
    let (s, bot) = (&cx.state, chatbot.map(uuid::Uuid::from));
    Ok(playground::page(&s.chat, &s.models, &s.db, &ok, bot).await?)
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
    let cx = Cx::get().await?;
    let s = &cx.state;
    if workspace_id.is_empty() {
        cx.platform_admin().await?;
        return Ok(svc::usage::report(&s.db, &s.credits, None, &from, &to).await?);
    }
    let ok = cx.guard(&workspace_id, Action::ViewUsage).await?;
    Ok(svc::usage::report(&s.db, &s.credits, Some(&ok.workspace), &from, &to).await?)
}

#[server(client = CsrfClient)]
pub async fn get_credit_settings() -> Result<keyward::usage::CreditSettings, AppError> {
    let cx = Cx::get().await?;
    cx.platform_admin().await?;
    Ok(credits::settings(&cx.state.db).await?)
}

#[server(client = CsrfClient)]
pub async fn set_byok_credit_policy(
    policy: keyward::usage::ByokCreditPolicy,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let s = &cx.state;
    Ok(credits::set_byok_credit_policy(&s.db, &s.changes, &by, policy).await?)
}

/// A plan's monthly credit allowance, as a decimal number of credits.
#[server(client = CsrfClient)]
pub async fn set_plan_allowance(plan: Plan, credits: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let micro =
        keyward::usage::parse_credits(&credits).map_err(|e| AppError::Invalid(e.to_string()))?;
    Ok(credits::set_allowance(&cx.state.db, &by, plan, micro).await?)
}

/// Adds or changes a row of the price table (US dollars per million tokens).
#[server(client = CsrfClient)]
pub async fn set_price(price: keyward::usage::PriceInput) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let parsed = price
        .parse()
        .map_err(|e| AppError::Invalid(e.to_string()))?;
    let (s, p) = (&cx.state, &price);
    Ok(credits::set_price(&s.db, &s.changes, &by, &p.provider, &p.model, parsed).await?)
}

#[server(client = CsrfClient)]
pub async fn delete_price(provider: String, model: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let s = &cx.state;
    Ok(credits::delete_price(&s.db, &s.changes, &by, &provider, &model).await?)
}

/// Adds credits to a workspace (a negative amount removes them); returns the new balance.
#[server(client = CsrfClient)]
pub async fn top_up_credits(
    workspace_id: String,
    credits: String,
    #[server(default)] note: String,
) -> Result<i64, AppError> {
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let micro =
        keyward::usage::parse_credits(&credits).map_err(|e| AppError::Invalid(e.to_string()))?;
    let (s, ws) = (&cx.state, id(&workspace_id)?);
    Ok(credits::top_up(&s.db, &s.changes, &by, ws, micro, &note).await?)
}

/// The API tokens of a workspace (everyone reads; owners and admins manage).
#[server(client = CsrfClient)]
pub async fn get_api_tokens(
    workspace_id: String,
) -> Result<keyward::tokens::ApiTokensPage, AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ViewKeys).await?;
    Ok(api_tokens::page(&cx.state.db, &ok).await?)
}

/// Creates a token; the answer holds its secret, shown this once.
#[server(client = CsrfClient)]
pub async fn create_api_token(
    workspace_id: String,
    new: keyward::tokens::NewApiToken,
) -> Result<keyward::tokens::CreatedApiToken, AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageApiTokens).await?;
    let by = By::user(&ok.user);
    let new = new.try_into()?;
    let (view, token) = api_tokens::create(&cx.state.db, &by, ok.workspace.id, new, None).await?;
    Ok(keyward::tokens::CreatedApiToken {
        token: token.to_string(),
        view,
    })
}

#[server(client = CsrfClient)]
pub async fn revoke_api_token(workspace_id: String, token_id: String) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageApiTokens).await?;
    let (s, by, token) = (&cx.state, By::user(&ok.user), id(&token_id)?);
    Ok(api_tokens::revoke(&s.db, &s.changes, &by, ok.workspace.id, token).await?)
}

/// Where bare model ids go on the public API (empty: automatic).
#[server(client = CsrfClient)]
pub async fn set_default_provider(
    workspace_id: String,
    #[server(default)] provider: String,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ManageKeys).await?;
    let (s, by) = (&cx.state, By::user(&ok.user));
    let provider = Some(provider.as_str());
    Ok(routing::set_default_provider(&s.db, &s.changes, &by, ok.workspace.id, provider).await?)
}

/// The Limits page of a workspace: every scope with its limits and live consumption, and the
/// last week's refusals (everyone who sees usage reads it).
#[server(client = CsrfClient)]
pub async fn get_limits(workspace_id: String) -> Result<keyward::limits::LimitsPage, AppError> {
    let cx = Cx::get().await?;
    let ok = cx.guard(&workspace_id, Action::ViewUsage).await?;
    let editable = limits::Editable {
        owner: keyward::policy::can(ok.actor, Action::ManageKeys),
        tokens: keyward::policy::can(ok.actor, Action::ManageApiTokens),
    };
    let s = &cx.state;
    Ok(limits::page(&s.db, s.chat.spend(), &ok.workspace, editable).await?)
}

/// Sets the limits of one scope of a workspace: its own, a chatbot's or a key's (owners), an
/// API token's (owners and admins). All fields empty clears them.
#[server(client = CsrfClient)]
pub async fn set_limits(
    workspace_id: String,
    scope: String,
    subject: String,
    limits: keyward::limits::LimitsInput,
) -> Result<(), AppError> {
    use keyward::limits::ScopeKind;
    let cx = Cx::get().await?;
    let kind = ScopeKind::parse(&scope).ok_or(AppError::NotFound)?;
    let action = match kind {
        ScopeKind::Token => Action::ManageApiTokens,
        _ => Action::ManageKeys,
    };
    let ok = cx.guard(&workspace_id, action).await?;
    let parsed = limits.parse()?;
    let s = &cx.state;
    let target = limits::target_in(&s.db, &ok.workspace, kind, &subject).await?;
    Ok(limits::set(
        &s.db,
        &s.changes,
        &By::user(&ok.user),
        &target,
        Some(parsed),
    )
    .await?)
}

/// The operator's limits: plans' defaults, platform keys', workspace overrides (platform admins).
#[server(client = CsrfClient)]
pub async fn get_operator_limits() -> Result<Vec<keyward::limits::ScopeLimitsView>, AppError> {
    let cx = Cx::get().await?;
    cx.platform_admin().await?;
    Ok(limits::operator_rows(&cx.state.db).await?)
}

/// Sets a plan's default, a workspace's override (replacing its plan's default) or a platform
/// key's limits (platform admins).
#[server(client = CsrfClient)]
pub async fn set_operator_limits(
    scope: String,
    subject: String,
    limits: keyward::limits::LimitsInput,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let kind = keyward::limits::ScopeKind::parse(&scope).ok_or(AppError::NotFound)?;
    let parsed = limits.parse()?;
    let s = &cx.state;
    let target = limits::operator_target(&s.db, kind, &subject).await?;
    Ok(limits::set(&s.db, &s.changes, &by, &target, Some(parsed)).await?)
}

/// How many workspaces a user may own, and whether the ones they create get their plan's
/// monthly allowance (platform admins).
#[server(client = CsrfClient)]
pub async fn set_workspace_policy(
    workspaces_per_user: String,
    self_service_allowance: Option<String>,
) -> Result<(), AppError> {
    let cx = Cx::get().await?;
    let by = cx.platform_admin().await?;
    let owned_per_user = workspaces_per_user
        .trim()
        .parse()
        .map_err(|_| AppError::Invalid("enter a whole number of workspaces".into()))?;
    let policy = workspaces::Policy {
        owned_per_user,
        allowance: self_service_allowance.is_some(),
    };
    Ok(workspaces::set_policy(&cx.state.db, &by, policy).await?)
}
