//! The server's implementation of the app's [`Backend`] seam: for each server function, read the
//! session cookie, authorize through [`crate::auth`], call one service, map the result to a DTO.

use crate::auth::{authorize, authorize_platform};
use crate::services::accounts::{self, SessionUser};
use crate::services::audit::{self, By, Event};
use crate::services::chatbots;
use crate::services::keys::{self, NewKey, Scope};
use crate::services::{self as svc, workspaces};
use crate::services::{catalogue, routing};
use crate::services::{conversations, playground, sign_up};
use crate::state::AppState;
use axum::http::{HeaderMap, HeaderValue, header};
use keyward::chat::{ChatPage, PlaygroundPage};
use keyward::credential::KeyInput;
use keyward::dto::{
    AdminWorkspaceRow, AuditFilter, AuditPage, ChatbotUpdate, ChatbotView, ChatbotsPage,
    InvitationPreview, InvitationView, KeyTestResult, KeyView, KeysPage, Me, MemberView,
    MembersPage, PlatformProviders, SessionState, SessionView, SignUpPreview, WorkspaceSummary,
};
use keyward::http::{SESSION_COOKIE, SESSION_COOKIE_SECURE};
use keyward::keys::FailurePolicy;
use keyward::policy::{Action, Plan, Role};
use keyward::system::SystemStatus;
use keyward_app::backend::Backend;
use keyward_app::error::AppError;
use leptos::prelude::use_context;
use sea_orm::EntityTrait;
use secrecy::SecretString;
use uuid::Uuid;
use zeroize::Zeroizing;

pub struct ServerBackend {
    pub state: AppState,
}

/// Ids from the browser: a malformed one is indistinguishable from another tenant's (404).
fn id(s: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(s).map_err(|_| AppError::NotFound)
}

fn summary(
    ws: &crate::entities::workspace::Model,
    role: Option<Role>,
) -> Result<WorkspaceSummary, AppError> {
    Ok(WorkspaceSummary {
        id: ws.id.to_string(),
        name: ws.name.clone(),
        slug: ws.slug.clone(),
        plan: ws.plan()?,
        role,
    })
}

impl ServerBackend {
    fn cookie_name(https: bool) -> &'static str {
        if https {
            SESSION_COOKIE_SECURE
        } else {
            SESSION_COOKIE
        }
    }

    /// Whether this request came over https (configured, or said by a trusted proxy).
    fn https(&self) -> bool {
        self.state.settings.https_for(Self::client_addr().as_ref())
    }

    /// The caller's address (behind trusted proxies), as the client layer worked it out.
    fn client() -> Option<std::net::IpAddr> {
        Self::client_addr().map(|c| c.ip)
    }

    fn client_addr() -> Option<crate::client::ClientAddr> {
        use_context::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::client::ClientAddr>().copied())
    }

    async fn headers() -> HeaderMap {
        leptos_axum::extract::<HeaderMap>()
            .await
            .unwrap_or_default()
    }

    async fn session_token(&self) -> Option<Zeroizing<String>> {
        self.session_token_in(&Self::headers().await, self.https())
    }

    fn session_token_in(&self, headers: &HeaderMap, https: bool) -> Option<Zeroizing<String>> {
        crate::routes::chat::cookie(headers, Self::cookie_name(https)).map(Zeroizing::new)
    }

    /// Who sent these request headers: whether the instance needs setting up, and the signed-in
    /// user if any. The `get_session_state` server function and the page renderer
    /// (`routes::pages::session`) both answer with this.
    pub async fn session_state_for(
        &self,
        headers: &HeaderMap,
        https: bool,
    ) -> Result<SessionState, AppError> {
        let needs_setup = accounts::needs_setup(&self.state.db).await?;
        let me = match self.current_in(headers, https).await? {
            Some(who) => Some(self.me(&who).await?),
            None => None,
        };
        Ok(SessionState {
            needs_setup,
            open_sign_up: self.state.sign_ups.enabled(),
            me,
        })
    }

    async fn current(&self) -> Result<Option<SessionUser>, AppError> {
        self.current_in(&Self::headers().await, self.https()).await
    }

    /// The signed-in user of these request headers, if any.
    async fn current_in(
        &self,
        headers: &HeaderMap,
        https: bool,
    ) -> Result<Option<SessionUser>, AppError> {
        match self.session_token_in(headers, https) {
            Some(token) => Ok(accounts::authenticate(&self.state.db, &token).await?),
            None => Ok(None),
        }
    }

    async fn require(&self) -> Result<SessionUser, AppError> {
        self.current().await?.ok_or(AppError::Unauthorized)
    }

    fn set_cookie(&self, value: &str, max_age: cookie::time::Duration) {
        let https = self.https();
        let cookie = cookie::Cookie::build((Self::cookie_name(https), value.to_string()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .secure(https)
            .max_age(max_age)
            .build();
        if let (Some(res), Ok(v)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            HeaderValue::from_str(&cookie.to_string()),
        ) {
            res.append_header(header::SET_COOKIE, v);
        }
    }

    fn start_session(&self, token: &str) {
        let max_age = cookie::time::Duration::seconds(accounts::ABSOLUTE_TIMEOUT.num_seconds());
        self.set_cookie(token, max_age);
    }

    fn clear_session(&self) {
        self.set_cookie("", cookie::time::Duration::ZERO);
    }

    /// The signed-in caller, authorized for `action` in the workspace with id `workspace_id`.
    async fn guard(
        &self,
        workspace_id: &str,
        action: Action,
    ) -> Result<(SessionUser, crate::auth::Authorized), AppError> {
        let who = self.require().await?;
        let ok = authorize(&self.state.db, Some(&who), id(workspace_id)?, action).await?;
        Ok((who, ok))
    }

    async fn me(&self, who: &SessionUser) -> Result<Me, AppError> {
        let db = &self.state.db;
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

    /// Resolves a key scope and authorizes `action` on it: an empty workspace id is the
    /// platform's scope (platform admins only); otherwise the one guard decides, and a chatbot id
    /// narrows the scope to that chatbot of the workspace (404 if it is not one of its chatbots).
    async fn key_scope(
        &self,
        workspace_id: &str,
        chatbot_id: &str,
        action: Action,
    ) -> Result<(By, Scope, Option<crate::auth::Authorized>), AppError> {
        if workspace_id.is_empty() {
            if !chatbot_id.is_empty() {
                return Err(AppError::NotFound);
            }
            return Ok((self.platform_admin().await?, Scope::Platform, None));
        }
        let (_, ok) = self.guard(workspace_id, action).await?;
        let scope = if chatbot_id.is_empty() {
            Scope::Workspace(ok.workspace.id)
        } else {
            let bot = chatbots::get(&self.state.db, ok.workspace.id, id(chatbot_id)?).await?;
            Scope::Chatbot {
                workspace: ok.workspace.id,
                chatbot: bot.id,
            }
        };
        Ok((By::user(&ok.user), scope, Some(ok)))
    }

    /// The signed-in platform admin, through the one guard.
    async fn platform_admin(&self) -> Result<By, AppError> {
        let who = self.require().await?;
        let admin = authorize_platform(&self.state.db, Some(&who)).await?;
        Ok(By::user(&admin))
    }

    /// Records a member or plan change that has already committed. A failure to record is
    /// logged; it cannot undo the change.
    async fn audit_after(&self, by: &By, workspace_id: Uuid, action: &str, detail: String) {
        let event = Event {
            workspace_id: Some(workspace_id),
            action,
            detail: Some(detail),
            ..Default::default()
        };
        if let Err(e) = audit::record(&self.state.db, by, event).await {
            tracing::error!(error = %e, action, "could not write an audit entry");
        }
    }

    async fn email_of(&self, user_id: Uuid) -> String {
        crate::entities::user::Entity::find_by_id(user_id)
            .one(&self.state.db)
            .await
            .ok()
            .flatten()
            .map_or_else(|| user_id.to_string(), |u| u.email)
    }

    async fn user_agent() -> Option<String> {
        Self::headers()
            .await
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    async fn sign_in_as(&self, email: &str, password: &str) -> Result<(), AppError> {
        let client = Self::client();
        let ua = Self::user_agent().await;
        let previous = self.session_token().await;
        let session = accounts::sign_in(
            &self.state.db,
            &self.state.sign_in_throttle,
            email,
            password,
            client,
            ua.as_deref(),
            previous.as_deref().map(String::as_str),
        )
        .await?;
        self.start_session(&session.token);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for ServerBackend {
    async fn system_status(&self) -> Result<SystemStatus, AppError> {
        // Any signed-in user; it writes (the check counter), so never anonymous.
        self.require().await?;
        Ok(svc::system::status(&self.state.db).await?)
    }

    async fn session_state(&self) -> Result<SessionState, AppError> {
        self.session_state_for(&Self::headers().await, self.https())
            .await
    }

    async fn setup_instance(
        &self,
        token: String,
        email: String,
        display_name: String,
        password: String,
        workspace_name: String,
    ) -> Result<(), AppError> {
        let password = Zeroizing::new(password);
        let form = accounts::SetupForm {
            email: &email,
            display_name: &display_name,
            password: &password,
            workspace_name: &workspace_name,
        };
        let guard = &self.state.sign_in_throttle;
        accounts::setup_with_token(&self.state.db, guard, Self::client(), &token, form).await?;
        self.sign_in_as(&email, &password).await
    }

    async fn sign_in(&self, email: String, password: String) -> Result<(), AppError> {
        let password = Zeroizing::new(password);
        self.sign_in_as(&email, &password).await
    }

    async fn sign_out(&self) -> Result<(), AppError> {
        if let Some(token) = self.session_token().await {
            accounts::sign_out(&self.state.db, &token).await?;
        }
        self.clear_session();
        Ok(())
    }

    async fn sign_out_everywhere(&self) -> Result<(), AppError> {
        let who = self.require().await?;
        accounts::sign_out_everywhere(&self.state.db, who.user_id, None).await?;
        self.clear_session();
        Ok(())
    }

    async fn change_password(&self, current: String, new: String) -> Result<(), AppError> {
        let who = self.require().await?;
        let (current, new) = (Zeroizing::new(current), Zeroizing::new(new));
        let guard = &self.state.sign_in_throttle;
        Ok(accounts::change_password(&self.state.db, guard, &who, &current, &new).await?)
    }

    async fn list_sessions(&self) -> Result<Vec<SessionView>, AppError> {
        let who = self.require().await?;
        let rows = accounts::list_sessions(&self.state.db, &who).await?;
        Ok(rows
            .into_iter()
            .map(|(current, s)| SessionView {
                current,
                created_at: s.created_at.to_rfc3339(),
                last_seen_at: s.last_seen_at.to_rfc3339(),
                user_agent: s.user_agent,
            })
            .collect())
    }

    async fn switch_workspace(&self, workspace_id: String) -> Result<(), AppError> {
        let who = self.require().await?;
        Ok(accounts::switch_workspace(&self.state.db, &who, id(&workspace_id)?).await?)
    }

    async fn create_workspace(&self, name: String) -> Result<(), AppError> {
        let who = self.require().await?;
        let ws = workspaces::create(&self.state.db, &who, &name).await?;
        Ok(accounts::switch_workspace(&self.state.db, &who, ws.id).await?)
    }

    async fn rename_workspace(&self, workspace_id: String, name: String) -> Result<(), AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageMembers).await?;
        Ok(workspaces::rename(&self.state.db, ok.workspace.id, &name).await?)
    }

    async fn members(&self, workspace_id: String) -> Result<MembersPage, AppError> {
        let (who, ok) = self.guard(&workspace_id, Action::ViewMembers).await?;
        let db = &self.state.db;
        let members = workspaces::members(db, ok.workspace.id).await?;
        let invitations = workspaces::pending_invitations(db, ok.workspace.id).await?;
        Ok(MembersPage {
            workspace: summary(&ok.workspace, ok.actor.role)?,
            members: members
                .into_iter()
                .map(|m| MemberView {
                    is_you: m.user_id == who.user_id,
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
                .collect::<Result<_, AppError>>()?,
            can_manage: keyward::policy::can(ok.actor, Action::ManageMembers),
        })
    }

    async fn invite(
        &self,
        workspace_id: String,
        email: String,
        role: Role,
    ) -> Result<String, AppError> {
        let (who, ok) = self.guard(&workspace_id, Action::ManageMembers).await?;
        let db = &self.state.db;
        let (_, token) = workspaces::invite(db, ok.workspace.id, who.user_id, &email, role).await?;
        let detail = format!("{} invited as {}", email.trim().to_lowercase(), role);
        self.audit_after(
            &By::user(&ok.user),
            ok.workspace.id,
            "member.invited",
            detail,
        )
        .await;
        Ok(format!("/invite/{}", token.as_str()))
    }

    async fn revoke_invitation(
        &self,
        workspace_id: String,
        invitation_id: String,
    ) -> Result<(), AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageMembers).await?;
        let db = &self.state.db;
        workspaces::revoke_invitation(db, ok.workspace.id, id(&invitation_id)?).await?;
        let by = By::user(&ok.user);
        self.audit_after(&by, ok.workspace.id, "invitation.revoked", invitation_id)
            .await;
        Ok(())
    }

    async fn change_role(
        &self,
        workspace_id: String,
        user_id: String,
        role: Role,
    ) -> Result<(), AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageMembers).await?;
        let db = &self.state.db;
        let target = id(&user_id)?;
        workspaces::change_role(db, ok.workspace.id, target, role).await?;
        let detail = format!("{} is now {}", self.email_of(target).await, role);
        self.audit_after(
            &By::user(&ok.user),
            ok.workspace.id,
            "member.role_changed",
            detail,
        )
        .await;
        Ok(())
    }

    async fn remove_member(&self, workspace_id: String, user_id: String) -> Result<(), AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageMembers).await?;
        let db = &self.state.db;
        let target = id(&user_id)?;
        let email = self.email_of(target).await;
        workspaces::remove_member(db, ok.workspace.id, target).await?;
        self.audit_after(
            &By::user(&ok.user),
            ok.workspace.id,
            "member.removed",
            email,
        )
        .await;
        Ok(())
    }

    async fn transfer_ownership(
        &self,
        workspace_id: String,
        user_id: String,
    ) -> Result<(), AppError> {
        let (who, ok) = self.guard(&workspace_id, Action::ManageMembers).await?;
        let db = &self.state.db;
        let target = id(&user_id)?;
        workspaces::transfer_ownership(db, ok.workspace.id, who.user_id, target).await?;
        let detail = format!("ownership transferred to {}", self.email_of(target).await);
        self.audit_after(
            &By::user(&ok.user),
            ok.workspace.id,
            "owner.transferred",
            detail,
        )
        .await;
        Ok(())
    }

    async fn invitation_preview(&self, token: String) -> Result<InvitationPreview, AppError> {
        let (inv, ws) = workspaces::invitation_info(&self.state.db, &token).await?;
        Ok(InvitationPreview {
            role: inv.role()?,
            workspace_name: ws.name,
            email: inv.email,
        })
    }

    async fn accept_invitation(&self, token: String) -> Result<(), AppError> {
        let who = self.require().await?;
        let ws = workspaces::accept_invitation(&self.state.db, &token, &who).await?;
        self.audit_after(&By::user(&who), ws, "member.joined", who.email.clone())
            .await;
        Ok(accounts::switch_workspace(&self.state.db, &who, ws).await?)
    }

    async fn sign_up_with_invitation(
        &self,
        token: String,
        display_name: String,
        password: String,
    ) -> Result<(), AppError> {
        let password = Zeroizing::new(password);
        let guard = &self.state.sign_in_throttle;
        let user = workspaces::sign_up_with_invitation(
            &self.state.db,
            guard,
            Self::client(),
            &token,
            &display_name,
            &password,
        )
        .await?;
        self.sign_in_as(&user.email, &password).await
    }

    async fn set_plan(&self, workspace_id: String, plan: Plan) -> Result<(), AppError> {
        let by = self.platform_admin().await?;
        let ws = id(&workspace_id)?;
        Ok(workspaces::set_plan(&self.state.db, &self.state.changes, &by, ws, plan).await?)
    }

    async fn all_workspaces(&self) -> Result<Vec<AdminWorkspaceRow>, AppError> {
        self.platform_admin().await?;
        let rows = workspaces::list_all(&self.state.db).await?;
        rows.into_iter()
            .map(|(w, n)| {
                Ok(AdminWorkspaceRow {
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

    async fn sign_up(
        &self,
        email: String,
        display_name: String,
        password: String,
        workspace_name: String,
    ) -> Result<(), AppError> {
        let password = Zeroizing::new(password);
        let form = sign_up::SignUpForm {
            email: &email,
            display_name: &display_name,
            password: &password,
            workspace_name: &workspace_name,
        };
        let s = &self.state;
        Ok(sign_up::request(
            &s.db,
            &s.sign_in_throttle,
            &s.sign_ups,
            Self::client(),
            form,
        )
        .await?)
    }

    async fn sign_up_preview(&self, token: String) -> Result<SignUpPreview, AppError> {
        let (email, workspace_name) = sign_up::preview(&self.state.db, &token).await?;
        Ok(SignUpPreview {
            email,
            workspace_name,
        })
    }

    async fn confirm_sign_up(&self, token: String) -> Result<(), AppError> {
        let ua = Self::user_agent().await;
        let session = sign_up::confirm(&self.state.db, &token, ua.as_deref()).await?;
        self.start_session(&session.token);
        Ok(())
    }

    async fn keys_page(
        &self,
        workspace_id: String,
        chatbot_id: String,
    ) -> Result<KeysPage, AppError> {
        let (_, scope, ok) = self
            .key_scope(&workspace_id, &chatbot_id, Action::ViewKeys)
            .await?;
        let can_manage = match &ok {
            Some(ok) => keyward::policy::can(ok.actor, Action::ManageKeys),
            None => true,
        };
        let mut page = keys::page(&self.state.db, scope, can_manage).await?;
        page.workspace = ok
            .map(|ok| summary(&ok.workspace, ok.actor.role))
            .transpose()?;
        Ok(page)
    }

    async fn test_new_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        provider: String,
        key: KeyInput,
        base_url: String,
    ) -> Result<KeyTestResult, AppError> {
        let key = SecretString::from(key.into_inner());
        let (_, scope, _) = self
            .key_scope(&workspace_id, &chatbot_id, Action::ManageKeys)
            .await?;
        let s = &self.state;
        s.key_test(scope.workspace_id())?;
        Ok(keys::test_unsaved(&s.db, &s.gateway, &provider, &key, &base_url).await?)
    }

    async fn add_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        provider: String,
        key: KeyInput,
        default_model: String,
        base_url: String,
    ) -> Result<KeyView, AppError> {
        let key = SecretString::from(key.into_inner());
        let (by, scope, _) = self
            .key_scope(&workspace_id, &chatbot_id, Action::ManageKeys)
            .await?;
        let s = &self.state;
        s.key_test(scope.workspace_id())?;
        let new = NewKey {
            provider,
            key,
            default_model,
            base_url,
        };
        Ok(keys::add(s.key_deps(), &by, scope, new).await?)
    }

    async fn test_saved_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
    ) -> Result<KeyTestResult, AppError> {
        let (by, scope, _) = self
            .key_scope(&workspace_id, &chatbot_id, Action::ManageKeys)
            .await?;
        let s = &self.state;
        s.key_test(scope.workspace_id())?;
        Ok(keys::test_saved(s.key_deps(), &by, scope, id(&key_id)?).await?)
    }

    async fn replace_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
        provider: String,
        key: KeyInput,
        default_model: String,
        base_url: String,
    ) -> Result<KeyTestResult, AppError> {
        let key = SecretString::from(key.into_inner());
        let (by, scope, _) = self
            .key_scope(&workspace_id, &chatbot_id, Action::ManageKeys)
            .await?;
        let s = &self.state;
        s.key_test(scope.workspace_id())?;
        let new = NewKey {
            provider,
            key,
            default_model,
            base_url,
        };
        let cid = id(&key_id)?;
        Ok(keys::replace(s.key_deps(), &by, scope, cid, new).await?)
    }

    async fn set_key_enabled(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
        enabled: bool,
    ) -> Result<(), AppError> {
        let (by, scope, _) = self
            .key_scope(&workspace_id, &chatbot_id, Action::ManageKeys)
            .await?;
        Ok(keys::set_enabled(
            &self.state.db,
            &self.state.changes,
            &by,
            scope,
            id(&key_id)?,
            enabled,
        )
        .await?)
    }

    async fn set_key_model(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
        model: String,
    ) -> Result<(), AppError> {
        let (by, scope, _) = self
            .key_scope(&workspace_id, &chatbot_id, Action::ManageKeys)
            .await?;
        Ok(keys::set_default_model(
            &self.state.db,
            &self.state.changes,
            &by,
            scope,
            id(&key_id)?,
            &model,
        )
        .await?)
    }

    async fn delete_key(
        &self,
        workspace_id: String,
        chatbot_id: String,
        key_id: String,
    ) -> Result<(), AppError> {
        let (by, scope, _) = self
            .key_scope(&workspace_id, &chatbot_id, Action::ManageKeys)
            .await?;
        Ok(keys::delete(
            &self.state.db,
            &self.state.changes,
            &by,
            scope,
            id(&key_id)?,
        )
        .await?)
    }

    async fn set_failure_policy(
        &self,
        workspace_id: String,
        policy: FailurePolicy,
    ) -> Result<(), AppError> {
        if workspace_id.is_empty() {
            return Err(AppError::NotFound);
        }
        let (by, scope, _) = self
            .key_scope(&workspace_id, "", Action::ManageKeys)
            .await?;
        let ws = scope.workspace_id().ok_or(AppError::NotFound)?;
        Ok(
            routing::set_failure_policy(&self.state.db, &self.state.changes, &by, ws, policy)
                .await?,
        )
    }

    async fn platform_providers(&self) -> Result<PlatformProviders, AppError> {
        self.key_scope("", "", Action::ManagePlatform).await?;
        Ok(catalogue::platform_providers(&self.state.db).await?)
    }

    async fn update_provider(
        &self,
        provider: String,
        base_url: String,
        default_model: String,
        byok_enabled: bool,
    ) -> Result<(), AppError> {
        let (by, _, _) = self.key_scope("", "", Action::ManagePlatform).await?;
        let change = catalogue::ProviderChange {
            base_url,
            default_model,
            byok_enabled,
        };
        let s = &self.state;
        Ok(
            catalogue::update_provider(&s.db, &s.changes, &s.gateway, &by, &provider, change)
                .await?,
        )
    }

    async fn set_byok_plans(&self, plans: Vec<Plan>) -> Result<(), AppError> {
        let (by, _, _) = self.key_scope("", "", Action::ManagePlatform).await?;
        Ok(catalogue::set_byok_plans(&self.state.db, &self.state.changes, &by, &plans).await?)
    }

    async fn audit_log(
        &self,
        workspace_id: String,
        filter: AuditFilter,
    ) -> Result<AuditPage, AppError> {
        let (_, scope, _) = self.key_scope(&workspace_id, "", Action::ViewAudit).await?;
        Ok(audit::list(&self.state.db, scope.workspace_id(), &filter).await?)
    }

    async fn chatbots(&self, workspace_id: String) -> Result<ChatbotsPage, AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ViewKeys).await?;
        let rows = chatbots::list(&self.state.db, ok.workspace.id).await?;
        Ok(ChatbotsPage {
            workspace: summary(&ok.workspace, ok.actor.role)?,
            chatbots: rows.iter().map(chatbots::view).collect(),
            can_manage: keyward::policy::can(ok.actor, Action::ManageChatbots),
        })
    }

    async fn create_chatbot(
        &self,
        workspace_id: String,
        name: String,
        provider: String,
        model: String,
        system_prompt: String,
        greeting: String,
        public: bool,
    ) -> Result<ChatbotView, AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageChatbots).await?;
        let new = chatbots::NewChatbot {
            name,
            provider,
            model,
            system_prompt,
            greeting,
            public,
        };
        let by = By::user(&ok.user);
        let bot = chatbots::create(&self.state.db, &by, ok.workspace.id, new).await?;
        Ok(chatbots::view(&bot))
    }

    async fn delete_chatbot(
        &self,
        workspace_id: String,
        chatbot_id: String,
    ) -> Result<(), AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageChatbots).await?;
        let by = By::user(&ok.user);
        let keys = keyward::policy::can(ok.actor, Action::ManageKeys);
        let bot = id(&chatbot_id)?;
        Ok(chatbots::delete(
            &self.state.db,
            &self.state.changes,
            &by,
            ok.workspace.id,
            bot,
            keys,
        )
        .await?)
    }

    async fn update_chatbot(
        &self,
        workspace_id: String,
        chatbot_id: String,
        update: ChatbotUpdate,
    ) -> Result<ChatbotView, AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageChatbots).await?;
        let by = By::user(&ok.user);
        let row = chatbots::update(
            &self.state.db,
            &by,
            ok.workspace.id,
            id(&chatbot_id)?,
            update,
        )
        .await?;
        Ok(chatbots::view(&row))
    }

    async fn chat_page(
        &self,
        workspace_slug: String,
        chatbot_slug: String,
    ) -> Result<ChatPage, AppError> {
        let db = &self.state.db;
        let (ws, bot) = chatbots::by_slugs(db, &workspace_slug, &chatbot_slug).await?;
        if !bot.public {
            let who = self.current().await?;
            // A private chatbot is indistinguishable from a missing one to outsiders.
            crate::auth::authorize(db, who.as_ref(), bot.workspace_id, Action::Chat)
                .await
                .map_err(|_| AppError::NotFound)?;
        }
        let (models, default_model) = playground::chatbot_models(&self.state.chat, &bot).await?;
        let headers = Self::headers().await;
        let mut conversation = None;
        let mut messages = Vec::new();
        if let Some(v) = crate::routes::chat::visitor_id(&headers, self.https()) {
            let owner = conversations::Owner::Visitor(conversations::visitor_hash(&v));
            if let Some(c) = conversations::latest(db, bot.id, &owner).await? {
                messages = conversations::messages(db, c.id)
                    .await?
                    .iter()
                    .map(|m| conversations::view(m, false))
                    .collect();
                conversation = Some(c.id.to_string());
            }
        }
        Ok(ChatPage {
            workspace_name: ws.name,
            workspace_slug: ws.slug,
            chatbot_name: bot.name,
            chatbot_slug: bot.slug,
            greeting: bot.greeting,
            models,
            default_model,
            conversation,
            messages,
        })
    }

    async fn playground(
        &self,
        workspace_id: String,
        chatbot_id: String,
    ) -> Result<PlaygroundPage, AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::Chat).await?;
        let st = &self.state;
        let ws = ok.workspace.id;
        let bots = chatbots::list(&st.db, ws).await?;
        let bot = match chatbot_id.trim() {
            "" => None,
            cid => Some(chatbots::get(&st.db, ws, id(cid)?).await?),
        };
        let mut models = svc::models::available(
            &st.db,
            &st.vault,
            &st.gateway,
            &st.keys,
            &st.models,
            ws,
            bot.as_ref().map(|b| b.id),
        )
        .await?;
        let mut default_model = models
            .iter()
            .find(|m| m.default)
            .map(|m| keyward::chat::model_id(&m.provider, &m.model));
        if let Some(b) = &bot {
            let (offered, default) = playground::chatbot_models(&st.chat, b).await?;
            for o in offered.into_iter().rev() {
                models.retain(|m| !(m.provider == o.provider && m.model == o.model));
                models.insert(0, o);
            }
            default_model = default.or(default_model);
        }
        let role = ok.actor.role;
        Ok(PlaygroundPage {
            workspace: summary(&ok.workspace, role)?,
            chatbots: bots.iter().map(chatbots::view).collect(),
            chatbot: bot.map(|b| b.id.to_string()),
            models,
            default_model,
        })
    }

    async fn usage(
        &self,
        workspace_id: String,
        from: String,
        to: String,
    ) -> Result<keyward::usage::UsageReport, AppError> {
        let st = &self.state;
        if workspace_id.is_empty() {
            self.platform_admin().await?;
            return Ok(svc::usage::report(&st.db, &st.credits, None, &from, &to).await?);
        }
        let (_, ok) = self.guard(&workspace_id, Action::ViewUsage).await?;
        Ok(svc::usage::report(&st.db, &st.credits, Some(&ok.workspace), &from, &to).await?)
    }

    async fn credit_settings(&self) -> Result<keyward::usage::CreditSettings, AppError> {
        self.platform_admin().await?;
        Ok(svc::credits::settings(&self.state.db).await?)
    }

    async fn set_byok_credit_policy(
        &self,
        policy: keyward::usage::ByokCreditPolicy,
    ) -> Result<(), AppError> {
        let by = self.platform_admin().await?;
        Ok(
            svc::credits::set_byok_credit_policy(&self.state.db, &self.state.changes, &by, policy)
                .await?,
        )
    }

    async fn set_plan_allowance(&self, plan: Plan, credits: String) -> Result<(), AppError> {
        let by = self.platform_admin().await?;
        let micro = keyward::usage::parse_credits(&credits)
            .map_err(|e| AppError::Invalid(e.to_string()))?;
        Ok(svc::credits::set_allowance(&self.state.db, &by, plan, micro).await?)
    }

    async fn set_price(&self, price: keyward::usage::PriceInput) -> Result<(), AppError> {
        let by = self.platform_admin().await?;
        let parsed = price
            .parse()
            .map_err(|e| AppError::Invalid(e.to_string()))?;
        let (s, p) = (&self.state, &price);
        Ok(svc::credits::set_price(&s.db, &s.changes, &by, &p.provider, &p.model, parsed).await?)
    }

    async fn delete_price(&self, provider: String, model: String) -> Result<(), AppError> {
        let by = self.platform_admin().await?;
        Ok(
            svc::credits::delete_price(&self.state.db, &self.state.changes, &by, &provider, &model)
                .await?,
        )
    }

    async fn top_up(
        &self,
        workspace_id: String,
        credits: String,
        note: String,
    ) -> Result<i64, AppError> {
        let by = self.platform_admin().await?;
        let micro = keyward::usage::parse_credits(&credits)
            .map_err(|e| AppError::Invalid(e.to_string()))?;
        Ok(svc::credits::top_up(
            &self.state.db,
            &self.state.changes,
            &by,
            id(&workspace_id)?,
            micro,
            &note,
        )
        .await?)
    }

    async fn api_tokens(
        &self,
        workspace_id: String,
    ) -> Result<keyward::tokens::ApiTokensPage, AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ViewKeys).await?;
        Ok(svc::api_tokens::page(
            &self.state.db,
            &ok.workspace,
            summary(&ok.workspace, ok.actor.role)?,
            keyward::policy::can(ok.actor, Action::ManageApiTokens),
            keyward::policy::can(ok.actor, Action::ManageKeys),
        )
        .await?)
    }

    async fn create_api_token(
        &self,
        workspace_id: String,
        new: keyward::tokens::NewApiToken,
    ) -> Result<keyward::tokens::CreatedApiToken, AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageApiTokens).await?;
        let by = By::user(&ok.user);
        let (view, token) =
            svc::api_tokens::create(&self.state.db, &by, ok.workspace.id, new.try_into()?, None)
                .await?;
        Ok(keyward::tokens::CreatedApiToken {
            token: token.to_string(),
            view,
        })
    }

    async fn revoke_api_token(
        &self,
        workspace_id: String,
        token_id: String,
    ) -> Result<(), AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageApiTokens).await?;
        let by = By::user(&ok.user);
        Ok(svc::api_tokens::revoke(
            &self.state.db,
            &self.state.changes,
            &by,
            ok.workspace.id,
            id(&token_id)?,
        )
        .await?)
    }

    async fn set_default_provider(
        &self,
        workspace_id: String,
        provider: String,
    ) -> Result<(), AppError> {
        let (_, ok) = self.guard(&workspace_id, Action::ManageKeys).await?;
        let by = By::user(&ok.user);
        Ok(svc::routing::set_default_provider(
            &self.state.db,
            &self.state.changes,
            &by,
            ok.workspace.id,
            Some(provider.as_str()),
        )
        .await?)
    }
}
