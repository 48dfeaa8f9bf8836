//! Spend control: the limits set at each scope (a plan's default, the operator's override for a
//! workspace, the owner's workspace limits, a chatbot, an API token, a provider key), the most a
//! model can answer (the worst case a request without `max_tokens` reserves), the indexes that
//! read a scope's spend in a window back from the usage records, and whether a workspace gets its
//! plan's monthly allowance (the operator can withhold it from self-service workspaces).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Limits::Table)
                    .col(string_len(Limits::Scope, 16))
                    .col(string_len(Limits::Subject, 64))
                    .col(uuid_null(Limits::WorkspaceId))
                    .col(big_integer_null(Limits::BudgetMicro))
                    .col(string_len_null(Limits::BudgetWindow, 8))
                    .col(integer(Limits::AlertPercent).default(80))
                    .col(big_integer_null(Limits::RequestsPerMinute))
                    .col(big_integer_null(Limits::InputTokensPerMinute))
                    .col(big_integer_null(Limits::OutputTokensPerMinute))
                    .col(big_integer_null(Limits::Concurrent))
                    .col(string_len(Limits::OnStoreError, 8).default("closed"))
                    .col(timestamp_with_time_zone(Limits::UpdatedAt))
                    .primary_key(Index::create().col(Limits::Scope).col(Limits::Subject))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_limits_workspace")
                    .table(Limits::Table)
                    .col(Limits::WorkspaceId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ModelPrices::Table)
                    .add_column(big_integer_null(ModelPrices::MaxOutputTokens))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Workspaces::Table)
                    .add_column(boolean(Workspaces::Allowance).default(true))
                    .to_owned(),
            )
            .await?;
        // What the seeded models answer at most (an operator edits it in the price table).
        for (provider, model, max) in [
            ("openai", "gpt-4o-mini", 16_384),
            ("openai", "gpt-4o", 16_384),
            ("anthropic", "claude-haiku-4-5", 64_000),
            ("anthropic", "claude-sonnet-4-5", 64_000),
            ("deepseek", "deepseek-chat", 8_192),
            ("gemini", "gemini-2.0-flash", 8_192),
        ] {
            manager
                .exec_stmt(
                    Query::update()
                        .table(ModelPrices::Table)
                        .value(ModelPrices::MaxOutputTokens, max)
                        .and_where(Expr::col(ModelPrices::Provider).eq(provider))
                        .and_where(Expr::col(ModelPrices::Model).eq(model))
                        .to_owned(),
                )
                .await?;
        }
        for (name, col) in [
            ("ix_usage_chatbot_day", UsageRecords::ChatbotId),
            ("ix_usage_token_day", UsageRecords::ApiTokenId),
            ("ix_usage_key_day", UsageRecords::KeyId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(UsageRecords::Table)
                        .col(col)
                        .col(UsageRecords::Day)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Workspaces::Table)
                    .drop_column(Workspaces::Allowance)
                    .to_owned(),
            )
            .await?;
        for name in [
            "ix_usage_chatbot_day",
            "ix_usage_token_day",
            "ix_usage_key_day",
        ] {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(UsageRecords::Table)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(ModelPrices::Table)
                    .drop_column(ModelPrices::MaxOutputTokens)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Limits::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Limits {
    Table,
    Scope,
    Subject,
    WorkspaceId,
    BudgetMicro,
    BudgetWindow,
    AlertPercent,
    RequestsPerMinute,
    InputTokensPerMinute,
    OutputTokensPerMinute,
    Concurrent,
    OnStoreError,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ModelPrices {
    Table,
    Provider,
    Model,
    MaxOutputTokens,
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    ChatbotId,
    ApiTokenId,
    KeyId,
    Day,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Allowance,
}
