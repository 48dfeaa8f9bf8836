//! The state every handler and server function can reach.

use crate::config::Settings;
use crate::services::accounts::SignInThrottle;
use crate::vault::Vault;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub vault: Vault,
    pub gateway: crate::gateway::Gateway,
    /// The one owner of cache invalidation: services publish to it, caches read through it.
    pub changes: crate::invalidation::Invalidation,
    pub keys: crate::gateway::cache::KeyCache,
    pub models: crate::services::models::ModelsCache,
    pub sign_in_throttle: SignInThrottle,
    pub visitor_limits: crate::throttle::VisitorLimits,
    pub credits: crate::services::credits::CreditBook,
    pub usage: crate::services::usage::UsageWriter,
    /// The one chat pipeline (playground, chat pages, public API).
    pub chat: crate::services::chat::ChatService,
    /// Work that outlives a request (usage records of ended streams, reply storage, key
    /// errors, token last-use); shutdown waits for it before the usage writer drains.
    pub tasks: tokio_util::task::TaskTracker,
    pub tokens: crate::services::api_tokens::TokenCache,
    /// The operator's trusted reverse proxies (where client addresses come from).
    pub proxies: crate::client::TrustedProxies,
    /// Live key tests (test, add, replace) per workspace per minute; the platform is `nil`.
    pub key_tests: crate::throttle::Throttle<uuid::Uuid>,
    /// Open sign-up: the mail relay, the links' base and the per-recipient limit.
    pub sign_ups: crate::services::sign_up::SignUps,
}

/// Live key tests one workspace may run a minute (each one is a request to a provider, and a
/// Custom URL makes it a probe of wherever that URL points).
pub const KEY_TESTS_PER_MINUTE: u32 = 20;

impl AppState {
    /// What the key lifecycle needs.
    pub fn key_deps(&self) -> crate::services::keys::Deps<'_> {
        crate::services::keys::Deps {
            db: &self.db,
            vault: &self.vault,
            gateway: &self.gateway,
            changes: &self.changes,
        }
    }

    /// Counts one live key test in `workspace` (`None`: platform keys).
    pub fn key_test(
        &self,
        workspace: Option<uuid::Uuid>,
    ) -> Result<(), crate::error::ServiceError> {
        self.key_tests
            .check(&workspace.unwrap_or(uuid::Uuid::nil()))
            .map_err(crate::error::ServiceError::RateLimited)
    }
}
