use sea_orm::entity::prelude::*;

/// List price of a model (micro-credits per million tokens); `model = "*"` prices a provider's
/// other models, `provider = "*"` everything else.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "model_prices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub provider: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub model: String,
    pub input_price: i64,
    pub output_price: i64,
    /// The most the model answers in one choice (the worst case of a request without
    /// `max_tokens`); `None`: [`keyward::limits::DEFAULT_MAX_OUTPUT`].
    pub max_output_tokens: Option<i64>,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
