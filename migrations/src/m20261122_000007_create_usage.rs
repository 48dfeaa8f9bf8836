//! Usage metering and credits: one usage record per request (written in batches), the credit
//! ledger (append-only) with a balance per workspace, and the price table, seeded with list
//! prices the platform admin can edit. Amounts are integer micro-credits (1 credit = US$1 at
//! list price); prices are micro-credits per million tokens.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(provider, model, input $/M, output $/M)`; `*` prices every model of a provider without a
/// row of its own, and `*`/`*` everything else.
const SEED_PRICES: &[(&str, &str, f64, f64)] = &[
    ("openai", "gpt-4o-mini", 0.15, 0.60),
    ("openai", "gpt-4o", 2.50, 10.00),
    ("openai", "*", 2.50, 10.00),
    ("anthropic", "claude-haiku-4-5", 1.00, 5.00),
    ("anthropic", "claude-sonnet-4-5", 3.00, 15.00),
    ("anthropic", "*", 3.00, 15.00),
    ("groq", "llama-3.1-70b-versatile", 0.59, 0.79),
    ("groq", "*", 0.59, 0.79),
    ("deepseek", "deepseek-chat", 0.27, 1.10),
    ("deepseek", "*", 0.55, 2.19),
    ("gemini", "gemini-2.0-flash", 0.10, 0.40),
    ("gemini", "*", 1.25, 10.00),
    ("mistral", "mistral-small-latest", 0.20, 0.60),
    ("mistral", "*", 2.00, 6.00),
    ("together", "*", 0.88, 0.88),
    ("openrouter", "*", 1.00, 3.00),
    ("nvidia", "*", 0.50, 1.50),
    ("*", "*", 1.00, 3.00),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageRecords::Table)
                    .if_not_exists()
                    .col(uuid(UsageRecords::Id).primary_key())
                    .col(timestamp_with_time_zone(UsageRecords::CreatedAt))
                    // `YYYY-MM-DD` (UTC): grouping by day is the same on both databases.
                    .col(string_len(UsageRecords::Day, 10))
                    .col(uuid(UsageRecords::WorkspaceId))
                    // No foreign keys to chatbots, conversations, keys or tokens: usage history
                    // outlives them.
                    .col(uuid_null(UsageRecords::ChatbotId))
                    .col(uuid_null(UsageRecords::ConversationId))
                    .col(uuid_null(UsageRecords::ApiTokenId))
                    // `visitor`, `dashboard` or `api`.
                    .col(string_len(UsageRecords::Channel, 16))
                    .col(string_len(UsageRecords::Provider, 64))
                    .col(string_len(UsageRecords::Model, 200))
                    // `chatbot`, `workspace`, `platform`; null when no key served.
                    .col(string_len_null(UsageRecords::KeySource, 16))
                    .col(uuid_null(UsageRecords::KeyId))
                    .col(string_len_null(UsageRecords::KeyHint, 32))
                    .col(big_integer(UsageRecords::InputTokens))
                    .col(big_integer(UsageRecords::OutputTokens))
                    .col(boolean(UsageRecords::TokensEstimated))
                    .col(big_integer_null(UsageRecords::FirstTokenMs))
                    .col(big_integer(UsageRecords::LatencyMs))
                    // `ok`, `stopped`, `error`.
                    .col(string_len(UsageRecords::Outcome, 16))
                    .col(string_len_null(UsageRecords::ErrorClass, 32))
                    .col(boolean(UsageRecords::FellBack))
                    .col(big_integer(UsageRecords::Credits))
                    .col(big_integer(UsageRecords::Cost))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UsageRecords::Table, UsageRecords::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_usage_workspace_day")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::WorkspaceId)
                    .col(UsageRecords::Day)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_usage_day")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::Day)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CreditBalances::Table)
                    .if_not_exists()
                    .col(uuid(CreditBalances::WorkspaceId).primary_key())
                    .col(big_integer(CreditBalances::Balance))
                    .col(timestamp_with_time_zone(CreditBalances::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CreditBalances::Table, CreditBalances::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CreditLedger::Table)
                    .if_not_exists()
                    .col(uuid(CreditLedger::Id).primary_key())
                    .col(uuid(CreditLedger::WorkspaceId))
                    // `allowance`, `topup`, `usage`, `adjustment`.
                    .col(string_len(CreditLedger::Kind, 16))
                    .col(big_integer(CreditLedger::Amount))
                    .col(big_integer(CreditLedger::BalanceAfter))
                    // `YYYY-MM` of a monthly allowance (one per workspace and month).
                    .col(string_len_null(CreditLedger::Period, 7))
                    // Usage entries: how many requests the debit covers.
                    .col(big_integer(CreditLedger::Requests))
                    .col(text(CreditLedger::Note))
                    .col(uuid_null(CreditLedger::ActorId))
                    .col(timestamp_with_time_zone(CreditLedger::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CreditLedger::Table, CreditLedger::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_ledger_workspace_created")
                    .table(CreditLedger::Table)
                    .col(CreditLedger::WorkspaceId)
                    .col(CreditLedger::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // At most one allowance per workspace and month, even with several instances.
        manager
            .create_index(
                Index::create()
                    .name("ux_ledger_allowance_period")
                    .table(CreditLedger::Table)
                    .col(CreditLedger::WorkspaceId)
                    .col(CreditLedger::Period)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ModelPrices::Table)
                    .if_not_exists()
                    .col(string_len(ModelPrices::Provider, 64))
                    .col(string_len(ModelPrices::Model, 200))
                    .col(big_integer(ModelPrices::InputPrice))
                    .col(big_integer(ModelPrices::OutputPrice))
                    .col(timestamp_with_time_zone(ModelPrices::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ModelPrices::Provider)
                            .col(ModelPrices::Model),
                    )
                    .to_owned(),
            )
            .await?;
        let mut seed = Query::insert()
            .into_table(ModelPrices::Table)
            .columns([
                ModelPrices::Provider,
                ModelPrices::Model,
                ModelPrices::InputPrice,
                ModelPrices::OutputPrice,
                ModelPrices::UpdatedAt,
            ])
            .to_owned();
        for (provider, model, input, output) in SEED_PRICES {
            seed.values_panic([
                (*provider).into(),
                (*model).into(),
                micro(*input).into(),
                micro(*output).into(),
                Expr::current_timestamp(),
            ]);
        }
        manager.exec_stmt(seed).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            ModelPrices::Table.into_iden(),
            CreditLedger::Table.into_iden(),
            CreditBalances::Table.into_iden(),
            UsageRecords::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn micro(dollars: f64) -> i64 {
    (dollars * 1_000_000.0).round() as i64
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    Id,
    CreatedAt,
    Day,
    WorkspaceId,
    ChatbotId,
    ConversationId,
    ApiTokenId,
    Channel,
    Provider,
    Model,
    KeySource,
    KeyId,
    KeyHint,
    InputTokens,
    OutputTokens,
    TokensEstimated,
    FirstTokenMs,
    LatencyMs,
    Outcome,
    ErrorClass,
    FellBack,
    Credits,
    Cost,
}

#[derive(DeriveIden)]
enum CreditBalances {
    Table,
    WorkspaceId,
    Balance,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CreditLedger {
    Table,
    Id,
    WorkspaceId,
    Kind,
    Amount,
    BalanceAfter,
    Period,
    Requests,
    Note,
    ActorId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ModelPrices {
    Table,
    Provider,
    Model,
    InputPrice,
    OutputPrice,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}
