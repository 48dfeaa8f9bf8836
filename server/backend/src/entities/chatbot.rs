use sea_orm::entity::prelude::*;

/// A workspace's chatbot. `allowed_models` is a comma-separated list of `provider/model` ids
/// visitors may switch to (empty: only the default).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chatbots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub slug: String,
    #[sea_orm(column_type = "Text")]
    pub system_prompt: String,
    #[sea_orm(column_type = "Text")]
    pub greeting: String,
    pub provider: String,
    pub model: Option<String>,
    pub temperature: f64,
    pub max_tokens: i32,
    pub public: bool,
    #[sea_orm(column_type = "Text")]
    pub allowed_models: String,
    pub daily_cap: i32,
    /// Origins whose pages may embed the chat page (newline-separated; empty: none).
    #[sea_orm(column_type = "Text")]
    pub allowed_sites: String,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
