use sea_orm::entity::prelude::*;

/// The platform admin's settings for one catalogue provider; absent means catalogue defaults.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub provider: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub base_url: Option<String>,
    pub default_model: Option<String>,
    pub byok_enabled: bool,
    pub updated_by: Option<Uuid>,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
