//! A workspace's default provider: where the public API sends a bare model id (`gpt-4o-mini`
//! rather than `openai/gpt-4o-mini`). Null: the first provider the workspace has its own key for,
//! else the first one a platform key serves.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Workspaces::Table)
                    .add_column(string_len_null(Workspaces::DefaultProvider, 32))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Workspaces::Table)
                    .drop_column(Workspaces::DefaultProvider)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    DefaultProvider,
}
