//! Who is calling: the one place a request's cookies become a caller. Server functions, the
//! chat stream routes, the CSV export and the REST API's session path all ask [`Caller::of`];
//! what a caller may do is decided afterwards by the one guard ([`crate::auth`]).
//!
//! The session cookie's name depends on whether the request came over https (the `__Host-`
//! name then), as the client layer worked it out behind trusted proxies.

use crate::client::ClientAddr;
use crate::config::Settings;
use crate::error::ServiceError;
use crate::services::accounts::{self, SessionUser};
use crate::state::AppState;
use axum::http::{HeaderMap, header, request::Parts};
use keyward::http::{SESSION_COOKIE, SESSION_COOKIE_SECURE, VISITOR_COOKIE, VISITOR_COOKIE_SECURE};
use sea_orm::DatabaseConnection;
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

    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.client.map(|c| c.ip)
    }
}

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller::of(&state.settings, parts))
    }
}
