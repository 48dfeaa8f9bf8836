use sea_orm::entity::prelude::*;

/// One movement of a workspace's credits. Append-only: rows are never updated or deleted.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_ledger")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub period: Option<String>,
    pub requests: i64,
    #[sea_orm(column_type = "Text")]
    pub note: String,
    pub actor_id: Option<Uuid>,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
