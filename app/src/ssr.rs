//! What a server-function body stands on (server side only): the application state, the caller
//! ([`Caller`], the one identity extractor every surface shares), the one guard, and the session
//! cookie. A body reads: `let cx = Cx::get().await?;` → guard → one service call → `?` (which
//! turns a `ServiceError` into an [`AppError`] that carries no internal detail).

use crate::error::AppError;
use keyward::ids::{KeyScope, WorkspaceId};
use keyward::policy::Action;
pub use keyward_backend::auth::Authorized;
use keyward_backend::auth::{authorize, authorize_platform};
pub use keyward_backend::identity::Caller;
use keyward_backend::identity::session_cookie_name;
use keyward_backend::services::accounts::{self, SessionUser};
pub use keyward_backend::services::audit::By;
use keyward_backend::services::{chatbots, keys::Scope};
pub use keyward_backend::state::AppState;
use leptos::prelude::use_context;
use uuid::Uuid;

/// Ids from the browser: a malformed one is indistinguishable from another tenant's (404).
pub fn id(s: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(s).map_err(|_| AppError::NotFound)
}

/// One server-function call's context.
pub struct Cx {
    pub state: AppState,
    pub caller: Caller,
}

impl Cx {
    /// The state Leptos was given and the caller of the request being served.
    pub async fn get() -> Result<Self, AppError> {
        let state = use_context::<AppState>().ok_or_else(|| {
            tracing::error!("no AppState in the Leptos context; routes were registered without it");
            AppError::Internal
        })?;
        let parts = use_context::<http::request::Parts>().ok_or_else(|| {
            tracing::error!("no request parts in the Leptos context");
            AppError::Internal
        })?;
        let caller = Caller::of(&state.settings, &parts);
        Ok(Cx { state, caller })
    }

    /// The signed-in user, if any.
    pub async fn user(&self) -> Result<Option<&SessionUser>, AppError> {
        Ok(self.caller.user(&self.state.db).await?)
    }

    /// The signed-in user, or `Unauthorized`.
    pub async fn require(&self) -> Result<&SessionUser, AppError> {
        Ok(self.caller.require(&self.state.db).await?)
    }

    /// The signed-in caller, authorized for `action` in the workspace `workspace_id`.
    pub async fn guard(&self, workspace_id: &str, action: Action) -> Result<Authorized, AppError> {
        self.guard_id(workspace_id.parse()?, action).await
    }

    /// [`Cx::guard`] for a typed id.
    pub async fn guard_id(
        &self,
        workspace: WorkspaceId,
        action: Action,
    ) -> Result<Authorized, AppError> {
        Ok(authorize(&self.state.db, self.user().await?, workspace.0, action).await?)
    }

    /// The signed-in platform admin, through the one guard.
    pub async fn platform_admin(&self) -> Result<By, AppError> {
        let admin = authorize_platform(&self.state.db, self.user().await?).await?;
        Ok(By::user(&admin))
    }

    /// A key scope, authorized for `action`: the platform's (platform admins only), a
    /// workspace's (the one guard decides), or one chatbot's of that workspace (404 if it is not
    /// one of its chatbots).
    pub async fn key_scope(
        &self,
        scope: KeyScope,
        action: Action,
    ) -> Result<(By, Scope, Option<Authorized>), AppError> {
        let Some(workspace) = scope.workspace() else {
            return Ok((self.platform_admin().await?, Scope::Platform, None));
        };
        let ok = self.guard_id(workspace, action).await?;
        let scope = match scope {
            KeyScope::Chatbot { chatbot, .. } => {
                let bot = chatbots::get(&self.state.db, ok.workspace.id, chatbot.0).await?;
                Scope::Chatbot {
                    workspace: ok.workspace.id,
                    chatbot: bot.id,
                }
            }
            _ => Scope::Workspace(ok.workspace.id),
        };
        Ok((By::user(&ok.user), scope, Some(ok)))
    }

    /// Signs in and starts the session cookie (rotating any session the browser presented).
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<(), AppError> {
        let session = accounts::sign_in(
            &self.state.db,
            &self.state.sign_in_throttle,
            email,
            password,
            self.caller.ip(),
            self.caller.user_agent.as_deref(),
            self.caller.session_token(),
        )
        .await?;
        self.start_session(&session.token);
        Ok(())
    }

    pub fn start_session(&self, token: &str) {
        let max_age = cookie::time::Duration::seconds(accounts::ABSOLUTE_TIMEOUT.num_seconds());
        self.set_cookie(token, max_age);
    }

    pub fn clear_session(&self) {
        self.set_cookie("", cookie::time::Duration::ZERO);
    }

    fn set_cookie(&self, value: &str, max_age: cookie::time::Duration) {
        let https = self.caller.https;
        let cookie = cookie::Cookie::build((session_cookie_name(https), value.to_string()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .secure(https)
            .max_age(max_age)
            .build();
        if let (Some(res), Ok(v)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            http::HeaderValue::from_str(&cookie.to_string()),
        ) {
            res.append_header(http::header::SET_COOKIE, v);
        }
    }
}
