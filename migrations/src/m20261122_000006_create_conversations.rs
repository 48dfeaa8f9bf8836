//! Conversations and their messages: what visitors (public chat page) and members (dashboard
//! playground) said to a chatbot or model, and what came back, with which key source, model,
//! tokens and latency. A visitor is known only by the SHA-256 of their cookie id.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .if_not_exists()
                    .col(uuid(Conversations::Id).primary_key())
                    .col(uuid(Conversations::WorkspaceId))
                    .col(uuid_null(Conversations::ChatbotId))
                    // `visitor` (public chat page) or `dashboard`.
                    .col(string_len(Conversations::Channel, 16))
                    .col(string_len_null(Conversations::VisitorHash, 64))
                    .col(uuid_null(Conversations::UserId))
                    .col(string_len(Conversations::Title, 120))
                    .col(timestamp_with_time_zone(Conversations::CreatedAt))
                    .col(timestamp_with_time_zone(Conversations::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Conversations::Table, Conversations::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Conversations::Table, Conversations::ChatbotId)
                            .to(Chatbots::Table, Chatbots::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_conversations_chatbot_visitor")
                    .table(Conversations::Table)
                    .col(Conversations::ChatbotId)
                    .col(Conversations::VisitorHash)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .if_not_exists()
                    .col(uuid(Messages::Id).primary_key())
                    .col(uuid(Messages::ConversationId))
                    .col(uuid(Messages::WorkspaceId))
                    .col(uuid_null(Messages::ChatbotId))
                    .col(string_len(Messages::Channel, 16))
                    // `user` or `assistant`.
                    .col(string_len(Messages::Role, 16))
                    .col(text(Messages::Content))
                    // `ok`, `stopped` (the reader stopped it) or `error`.
                    .col(string_len(Messages::Status, 16))
                    .col(string_len_null(Messages::Provider, 64))
                    .col(string_len_null(Messages::Model, 200))
                    .col(string_len_null(Messages::KeySource, 16))
                    .col(string_len_null(Messages::ErrorClass, 32))
                    .col(big_integer_null(Messages::InputTokens))
                    .col(big_integer_null(Messages::OutputTokens))
                    .col(big_integer_null(Messages::FirstTokenMs))
                    .col(big_integer_null(Messages::LatencyMs))
                    .col(timestamp_with_time_zone(Messages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Messages::Table, Messages::ConversationId)
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_messages_conversation")
                    .table(Messages::Table)
                    .col(Messages::ConversationId)
                    .col(Messages::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // The chatbot's daily cap counts today's visitor messages.
        manager
            .create_index(
                Index::create()
                    .name("ix_messages_chatbot_day")
                    .table(Messages::Table)
                    .col(Messages::ChatbotId)
                    .col(Messages::Channel)
                    .col(Messages::Role)
                    .col(Messages::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Messages::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Conversations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    WorkspaceId,
    ChatbotId,
    Channel,
    VisitorHash,
    UserId,
    Title,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ConversationId,
    WorkspaceId,
    ChatbotId,
    Channel,
    Role,
    Content,
    Status,
    Provider,
    Model,
    KeySource,
    ErrorClass,
    InputTokens,
    OutputTokens,
    FirstTokenMs,
    LatencyMs,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Chatbots {
    Table,
    Id,
}
