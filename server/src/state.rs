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
    pub keys: crate::gateway::cache::KeyCache,
    pub models: crate::services::models::ModelsCache,
    pub sign_in_throttle: SignInThrottle,
    pub visitor_limits: crate::services::playground::VisitorLimits,
    pub credits: crate::services::credits::CreditBook,
    pub usage: crate::services::usage::UsageWriter,
    pub tokens: crate::services::api_tokens::TokenCache,
}
