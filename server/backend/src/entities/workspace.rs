use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workspaces")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    #[sea_orm(unique)]
    pub slug: String,
    pub plan: String,
    pub failure_policy: String,
    /// Where a bare model id goes on the public API (`None`: the first provider with a key).
    pub default_provider: Option<String>,
    /// Whether it receives its plan's monthly allowance (the operator may withhold it from
    /// workspaces users create themselves).
    pub allowance: bool,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl Model {
    pub fn plan(&self) -> Result<keyward::policy::Plan, crate::error::ServiceError> {
        super::checked("workspaces.plan", &self.plan)
    }

    pub fn failure_policy(
        &self,
    ) -> Result<keyward::keys::FailurePolicy, crate::error::ServiceError> {
        super::checked("workspaces.failure_policy", &self.failure_policy)
    }
}

impl ActiveModelBehavior for ActiveModel {}
