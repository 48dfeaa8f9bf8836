//! The sites a chatbot's public chat page may be embedded in (`frame-ancestors`): a
//! newline-separated list of origins such as `https://www.example.com`. Empty: nowhere.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Chatbots::Table)
                    .add_column(text(Chatbots::AllowedSites).default(""))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Chatbots::Table)
                    .drop_column(Chatbots::AllowedSites)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Chatbots {
    Table,
    AllowedSites,
}
