use sea_orm::entity::prelude::*;

/// An open sign-up waiting for its address to be confirmed: the account's checked fields and
/// password hash, single use and expiring. Keyed for lookup by the SHA-256 of the mailed
/// link's token.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sign_up_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub workspace_name: String,
    pub created_at: ChronoDateTimeUtc,
    pub expires_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
