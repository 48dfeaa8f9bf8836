use sea_orm::entity::prelude::*;

/// A stored provider key. `ciphertext` is a vault blob; the plaintext is never stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Option<Uuid>,
    pub scope: String,
    pub owner_id: Uuid,
    pub provider: String,
    #[sea_orm(column_type = "Text")]
    pub base_url: String,
    /// The data key that encrypted `ciphertext` (also in its authenticated header).
    pub key_id: i32,
    pub ciphertext: Vec<u8>,
    pub hint: String,
    pub status: String,
    pub default_model: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
    pub last_used_at: Option<ChronoDateTimeUtc>,
    pub last_tested_at: Option<ChronoDateTimeUtc>,
    pub last_error_class: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error_message: Option<String>,
    pub last_error_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl Model {
    pub fn status(&self) -> Result<keyward::keys::KeyStatus, crate::error::ServiceError> {
        super::checked("credentials.status", &self.status)
    }
}

impl ActiveModelBehavior for ActiveModel {}
