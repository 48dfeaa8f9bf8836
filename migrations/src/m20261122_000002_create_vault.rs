//! The vault: its metadata row, the keyring of wrapped data keys, and the credentials table whose
//! ciphertexts they protect.
//!
//! `credentials` has no foreign keys to workspaces or chatbots (those tables come later and
//! platform keys have neither); every query scopes it by workspace id explicitly.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VaultMeta::Table)
                    .if_not_exists()
                    .col(integer(VaultMeta::Id).primary_key())
                    .col(integer(VaultMeta::FormatVersion))
                    .col(blob(VaultMeta::KdfSalt))
                    .col(blob(VaultMeta::KeyCheck))
                    .col(integer(VaultMeta::MinKeyId))
                    .col(big_integer(VaultMeta::Generation))
                    .col(timestamp_with_time_zone(VaultMeta::CreatedAt))
                    .col(timestamp_with_time_zone(VaultMeta::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VaultKeys::Table)
                    .if_not_exists()
                    .col(integer(VaultKeys::Id).primary_key())
                    .col(string_len(VaultKeys::Status, 16))
                    .col(blob(VaultKeys::Wrapped))
                    .col(timestamp_with_time_zone(VaultKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(VaultKeys::ActivatedAt))
                    .col(timestamp_with_time_zone_null(VaultKeys::RetiredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .if_not_exists()
                    .col(uuid(Credentials::Id).primary_key())
                    .col(uuid_null(Credentials::WorkspaceId))
                    .col(string_len(Credentials::Scope, 16))
                    .col(uuid(Credentials::OwnerId))
                    .col(string_len(Credentials::Provider, 64))
                    .col(text(Credentials::BaseUrl))
                    .col(integer(Credentials::KeyId))
                    .col(blob(Credentials::Ciphertext))
                    .col(string_len(Credentials::Hint, 64))
                    .col(string_len(Credentials::Status, 16))
                    .col(string_len_null(Credentials::DefaultModel, 200))
                    .col(uuid_null(Credentials::CreatedBy))
                    .col(timestamp_with_time_zone(Credentials::CreatedAt))
                    .col(timestamp_with_time_zone(Credentials::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Credentials::LastUsedAt))
                    .col(timestamp_with_time_zone_null(Credentials::LastTestedAt))
                    .col(string_len_null(Credentials::LastErrorClass, 32))
                    .col(text_null(Credentials::LastErrorMessage))
                    .col(timestamp_with_time_zone_null(Credentials::LastErrorAt))
                    .to_owned(),
            )
            .await?;
        // One key per provider per scope owner.
        manager
            .create_index(
                Index::create()
                    .name("ux_credentials_owner_provider")
                    .table(Credentials::Table)
                    .col(Credentials::Scope)
                    .col(Credentials::OwnerId)
                    .col(Credentials::Provider)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_credentials_workspace")
                    .table(Credentials::Table)
                    .col(Credentials::WorkspaceId)
                    .to_owned(),
            )
            .await?;
        // Rewrap walks the credentials still on an old data key.
        manager
            .create_index(
                Index::create()
                    .name("ix_credentials_key_id")
                    .table(Credentials::Table)
                    .col(Credentials::KeyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Credentials::Table.into_iden(),
            VaultKeys::Table.into_iden(),
            VaultMeta::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum VaultMeta {
    Table,
    Id,
    FormatVersion,
    KdfSalt,
    KeyCheck,
    MinKeyId,
    Generation,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum VaultKeys {
    Table,
    Id,
    Status,
    Wrapped,
    CreatedAt,
    ActivatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    Id,
    WorkspaceId,
    Scope,
    OwnerId,
    Provider,
    BaseUrl,
    KeyId,
    Ciphertext,
    Hint,
    Status,
    DefaultModel,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    LastUsedAt,
    LastTestedAt,
    LastErrorClass,
    LastErrorMessage,
    LastErrorAt,
}
