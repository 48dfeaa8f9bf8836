use sea_orm::entity::prelude::*;

/// The limits set at one scope (see [`keyward::limits`]): `scope` is a
/// [`ScopeKind`](keyward::limits::ScopeKind), `subject` the plan's name or the id of the
/// workspace, chatbot, API token or key. `workspace_id` is the workspace a row belongs to (none
/// for a plan's default or a platform key's limits), so a workspace's rows load together.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "limits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub subject: String,
    pub workspace_id: Option<Uuid>,
    pub budget_micro: Option<i64>,
    pub budget_window: Option<String>,
    pub alert_percent: i32,
    pub requests_per_minute: Option<i64>,
    pub input_tokens_per_minute: Option<i64>,
    pub output_tokens_per_minute: Option<i64>,
    pub concurrent: Option<i64>,
    pub on_store_error: String,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
