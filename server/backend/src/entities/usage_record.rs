use sea_orm::entity::prelude::*;

/// One request through Keyward: who, which provider, model and key, tokens, timing, outcome,
/// credits charged and cost at list price (micro-credits).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub created_at: ChronoDateTimeUtc,
    pub day: String,
    pub workspace_id: Uuid,
    pub chatbot_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub api_token_id: Option<Uuid>,
    pub channel: String,
    pub provider: String,
    pub model: String,
    pub key_source: Option<String>,
    pub key_id: Option<Uuid>,
    pub key_hint: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub tokens_estimated: bool,
    pub first_token_ms: Option<i64>,
    pub latency_ms: i64,
    pub outcome: String,
    pub error_class: Option<String>,
    pub fell_back: bool,
    pub credits: i64,
    pub cost: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
