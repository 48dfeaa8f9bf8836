use sea_orm::entity::prelude::*;

/// A conversation with a chatbot (or, from the dashboard, with a model). A visitor's is found by
/// the SHA-256 of their cookie id (`visitor_hash`); a member's by `user_id`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub chatbot_id: Option<Uuid>,
    pub channel: String,
    pub visitor_hash: Option<String>,
    pub user_id: Option<Uuid>,
    pub title: String,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
