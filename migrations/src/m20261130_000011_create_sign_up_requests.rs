//! Open sign-up confirms the address by email: a request holds the new account's checked fields
//! and password hash until the link in the mail is opened (single use, expiring). Looked up by
//! the SHA-256 of the link's token.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SignUpRequests::Table)
                    .if_not_exists()
                    .col(uuid(SignUpRequests::Id).primary_key())
                    .col(string_len_uniq(SignUpRequests::TokenHash, 64))
                    .col(string_len(SignUpRequests::Email, 254))
                    .col(string_len(SignUpRequests::DisplayName, 100))
                    .col(string_len(SignUpRequests::PasswordHash, 255))
                    .col(string_len(SignUpRequests::WorkspaceName, 80))
                    .col(timestamp_with_time_zone(SignUpRequests::CreatedAt))
                    .col(timestamp_with_time_zone(SignUpRequests::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sign_up_requests_email")
                    .table(SignUpRequests::Table)
                    .col(SignUpRequests::Email)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SignUpRequests::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SignUpRequests {
    Table,
    Id,
    TokenHash,
    Email,
    DisplayName,
    PasswordHash,
    WorkspaceName,
    CreatedAt,
    ExpiresAt,
}
