//! Who is calling: the one place a request's cookies and API token become a caller. Server
//! functions, the chat stream routes, the CSV export and the REST API all take a [`Caller`];
//! what a caller may do is decided afterwards by the one guard ([`crate::auth`]), which
//! [`Caller::access`] calls for a session after checking an API token first.
//!
//! The session cookie's name depends on whether the request came over https (the `__Host-`
//! name then), as the client layer worked it out behind trusted proxies.

use crate::auth::authorize;
use crate::client::ClientAddr;
use crate::config::Settings;
use crate::entities::workspace;
use crate::error::ServiceError;
use crate::services::accounts::{self, SessionUser};
use crate::services::api_tokens::{TokenAuth, TokenCache};
use crate::services::audit::By;
use axum::extract::FromRef;
use axum::http::{HeaderMap, header, request::Parts};
use keyward::http::{SESSION_COOKIE, SESSION_COOKIE_SECURE, VISITOR_COOKIE, VISITOR_COOKIE_SECURE};
use keyward::policy::{Action, Actor, can};
use keyward::tokens::TokenScope;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use uuid::Uuid;
use zeroize::Zeroizing;

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// The session cookie's name for a request over https or not.
pub fn session_cookie_name(https: bool) -> &'static str {
    if https {
        SESSION_COOKIE_SECURE
    } else {
        SESSION_COOKIE
    }
}

/// The visitor cookie's name for a request over https or not.
pub fn visitor_cookie_name(https: bool) -> &'static str {
    if https {
        VISITOR_COOKIE_SECURE
    } else {
        VISITOR_COOKIE
    }
}

/// The API token a request presents: `Authorization: Bearer …`, else `x-api-key`.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Whether a request presents an API token at all (then only the token counts; its cookies are
/// ignored).
pub fn has_token(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key("x-api-key")
}

/// A well-formed visitor id: 32 random bytes, base64url without padding.
fn valid_visitor_id(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The caller of one request: where it came from, over what, and who is signed in. Built
/// without IO; the session is read (once) only when someone asks who is signed in.
pub struct Caller {
    /// The client's address behind trusted proxies (set by the client layer).
    pub client: Option<ClientAddr>,
    /// The request came over https (configured, or said by a trusted proxy).
    pub https: bool,
    /// The session token the request presents, if any.
    session: Option<Zeroizing<String>>,
    /// The API token the request presents (`Some("")` for an empty or unreadable one), if the
    /// request has an `Authorization` or `x-api-key` header at all.
    token: Option<Zeroizing<String>>,
    /// A well-formed visitor id (the public chat pages' cookie), if any.
    pub visitor: Option<String>,
    pub user_agent: Option<String>,
    user: tokio::sync::OnceCell<Option<SessionUser>>,
}

/// Never prints the session token or the visitor id.
impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("client", &self.client)
            .field("https", &self.https)
            .field("session", &self.session.as_ref().map(|_| "…"))
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("visitor", &self.visitor.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// The caller of a request, from its parts.
    pub fn of(settings: &Settings, parts: &Parts) -> Self {
        let client = parts.extensions.get::<ClientAddr>().copied();
        Self::from_headers(settings, &parts.headers, client)
    }

    pub fn from_headers(
        settings: &Settings,
        headers: &HeaderMap,
        client: Option<ClientAddr>,
    ) -> Self {
        let https = settings.https_for(client.as_ref());
        Caller {
            client,
            https,
            session: cookie(headers, session_cookie_name(https)).map(Zeroizing::new),
            token: has_token(headers)
                .then(|| Zeroizing::new(presented(headers).unwrap_or("").to_string())),
            visitor: cookie(headers, visitor_cookie_name(https)).filter(|v| valid_visitor_id(v)),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            user: tokio::sync::OnceCell::new(),
        }
    }

    /// The signed-in user, if the session the request presents is live (read once).
    pub async fn user(
        &self,
        db: &DatabaseConnection,
    ) -> Result<Option<&SessionUser>, ServiceError> {
        let user = self
            .user
            .get_or_try_init(|| async {
                match &self.session {
                    Some(token) => accounts::authenticate(db, token).await,
                    None => Ok(None),
                }
            })
            .await?;
        Ok(user.as_ref())
    }

    /// The signed-in user, or `Unauthorized`.
    pub async fn require(&self, db: &DatabaseConnection) -> Result<&SessionUser, ServiceError> {
        self.user(db).await?.ok_or(ServiceError::Unauthorized)
    }

    /// The session token presented (even if it is no longer live).
    pub fn session_token(&self) -> Option<&str> {
        self.session.as_deref().map(String::as_str)
    }

    /// The API token presented, if the request presents one (then only it counts).
    pub fn api_token(&self) -> Option<&str> {
        self.token.as_deref().map(String::as_str)
    }

    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.client.map(|c| c.ip)
    }
}

/// A caller allowed to act in a workspace, by session or by API token.
#[derive(Clone, Debug)]
pub struct Access {
    pub workspace: workspace::Model,
    pub actor: Actor,
    /// Who the audit log names.
    pub by: By,
    /// The token the caller presented (`None`: a session).
    pub token: Option<Arc<TokenAuth>>,
}

impl Caller {
    /// Checks that the caller may perform `action` in `workspace_id`. A request that presents an
    /// API token is that token alone (its cookies are ignored): unknown, revoked or expired →
    /// `Unauthorized`; another workspace's → `NotFound`; no actor there by the policy
    /// ([`Actor::token`]) or not allowed → `Forbidden`. Otherwise the session's user goes
    /// through the one guard, [`authorize`].
    pub async fn access(
        &self,
        db: &DatabaseConnection,
        tokens: &TokenCache,
        workspace_id: Uuid,
        action: Action,
    ) -> Result<Access, ServiceError> {
        let Some(presented) = self.api_token() else {
            let ok = authorize(db, self.user(db).await?, workspace_id, action).await?;
            return Ok(Access {
                by: By::user(&ok.user),
                workspace: ok.workspace,
                actor: ok.actor,
                token: None,
            });
        };
        let auth = tokens
            .authenticate(db, presented)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        let actor =
            Actor::token(auth.allows(TokenScope::Management)).ok_or(ServiceError::Forbidden)?;
        // Another workspace's ids are indistinguishable from missing ones.
        if auth.workspace != workspace_id {
            return Err(ServiceError::NotFound);
        }
        if !can(actor, action) {
            return Err(ServiceError::Forbidden);
        }
        Ok(Access {
            workspace: crate::services::workspaces::get(db, workspace_id).await?,
            actor,
            by: By::token(presented),
            token: Some(auth),
        })
    }
}

impl<S> axum::extract::FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Settings>: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller::of(&Arc::<Settings>::from_ref(state), parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn caller(pairs: &[(&'static str, &'static str)]) -> Caller {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        Caller::from_headers(&Settings::default(), &h, None)
    }

    #[test]
    fn a_token_is_read_from_bearer_else_x_api_key_and_never_printed() {
        let c = caller(&[
            ("authorization", "Bearer kw_secret123"),
            ("x-api-key", "kw_other"),
        ]);
        assert_eq!(c.api_token(), Some("kw_secret123"));
        let c = caller(&[
            ("x-api-key", " kw_secret456 "),
            ("cookie", "keyward_session=sess1"),
        ]);
        assert_eq!(c.api_token(), Some("kw_secret456"));
        assert_eq!(c.session_token(), Some("sess1"));
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("secret456") && !printed.contains("sess1"),
            "{printed}"
        );
    }

    #[test]
    fn an_unreadable_authorization_header_is_a_token_that_fails_not_a_fallback_to_cookies() {
        let c = caller(&[
            ("authorization", "Basic dXNlcjpwdw=="),
            ("cookie", "keyward_session=s"),
        ]);
        assert_eq!(c.api_token(), Some(""));
        assert_eq!(caller(&[("cookie", "keyward_session=s")]).api_token(), None);
    }
}
