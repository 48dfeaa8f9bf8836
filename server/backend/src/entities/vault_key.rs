use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "vault_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub status: String,
    /// `nonce ‖ wrapped data key ‖ tag` under the key-encryption key; empty once retired.
    pub wrapped: Vec<u8>,
    pub created_at: ChronoDateTimeUtc,
    pub activated_at: Option<ChronoDateTimeUtc>,
    pub retired_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
