//! Chatbots: a workspace's public (or private) assistants, each with its own prompt, default
//! provider and model, the models visitors may switch to, a daily message cap, and optionally
//! its own keys (credentials with scope `chatbot` and the chatbot's id as owner).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Chatbots::Table)
                    .if_not_exists()
                    .col(uuid(Chatbots::Id).primary_key())
                    .col(uuid(Chatbots::WorkspaceId))
                    .col(string_len(Chatbots::Name, 80))
                    .col(string_len(Chatbots::Slug, 48))
                    .col(text(Chatbots::SystemPrompt))
                    .col(text(Chatbots::Greeting))
                    .col(string_len(Chatbots::Provider, 64))
                    .col(string_len_null(Chatbots::Model, 200))
                    .col(double(Chatbots::Temperature).default(0.7))
                    .col(integer(Chatbots::MaxTokens).default(1024))
                    .col(boolean(Chatbots::Public).default(false))
                    .col(text(Chatbots::AllowedModels))
                    .col(integer(Chatbots::DailyCap).default(0))
                    .col(timestamp_with_time_zone(Chatbots::CreatedAt))
                    .col(timestamp_with_time_zone(Chatbots::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Chatbots::Table, Chatbots::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_chatbots_workspace_slug")
                    .table(Chatbots::Table)
                    .col(Chatbots::WorkspaceId)
                    .col(Chatbots::Slug)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Chatbots::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Chatbots {
    Table,
    Id,
    WorkspaceId,
    Name,
    Slug,
    SystemPrompt,
    Greeting,
    Provider,
    Model,
    Temperature,
    MaxTokens,
    Public,
    AllowedModels,
    DailyCap,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}
