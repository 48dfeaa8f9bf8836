use sea_orm::entity::prelude::*;

/// One message of a conversation: the user's, or the assistant's reply with how it was served.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub workspace_id: Uuid,
    pub chatbot_id: Option<Uuid>,
    pub channel: String,
    pub role: String,
    #[sea_orm(column_type = "Text")]
    pub content: String,
    pub status: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub key_source: Option<String>,
    pub error_class: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub first_token_ms: Option<i64>,
    pub latency_ms: Option<i64>,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
