//! Keyward's database migrations, run at startup and by `keyward migrate`.
//!
//! Every migration must work on SQLite and PostgreSQL (the test suite runs both). Files are named
//! `mYYYYMMDD_NNNNNN_verb_table.rs` and never edited once they have landed: a change is a new
//! migration.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_settings;
mod m20261122_000002_create_vault;
mod m20261122_000003_create_accounts;
mod m20261122_000004_create_key_management;
mod m20261122_000005_create_chatbots;
mod m20261122_000006_create_conversations;
mod m20261122_000007_create_usage;
mod m20261123_000008_create_api_tokens;
mod m20261123_000009_workspace_default_provider;
mod m20261130_000010_chatbot_allowed_sites;
mod m20261130_000011_create_sign_up_requests;
mod m20261201_000012_create_limits;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_settings::Migration),
            Box::new(m20261122_000002_create_vault::Migration),
            Box::new(m20261122_000003_create_accounts::Migration),
            Box::new(m20261122_000004_create_key_management::Migration),
            Box::new(m20261122_000005_create_chatbots::Migration),
            Box::new(m20261122_000006_create_conversations::Migration),
            Box::new(m20261122_000007_create_usage::Migration),
            Box::new(m20261123_000008_create_api_tokens::Migration),
            Box::new(m20261123_000009_workspace_default_provider::Migration),
            Box::new(m20261130_000010_chatbot_allowed_sites::Migration),
            Box::new(m20261130_000011_create_sign_up_requests::Migration),
            Box::new(m20261201_000012_create_limits::Migration),
        ]
    }
}
