use sea_orm::entity::prelude::*;

/// A single-use, expiring invitation. Keyed for lookup by the SHA-256 of the link's token.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub email: String,
    pub role: String,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub created_by: Option<Uuid>,
    pub created_at: ChronoDateTimeUtc,
    pub expires_at: ChronoDateTimeUtc,
    pub accepted_at: Option<ChronoDateTimeUtc>,
    pub accepted_by: Option<Uuid>,
    pub revoked_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl Model {
    pub fn role(&self) -> Result<keyward::policy::Role, crate::error::ServiceError> {
        super::checked("invitations.role", &self.role)
    }
}

impl ActiveModelBehavior for ActiveModel {}
