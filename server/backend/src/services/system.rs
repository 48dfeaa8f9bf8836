//! Instance facts: the instance id minted on first start, and the status the dashboard shows.

use crate::entities::setting;
use crate::error::ServiceError;
use keyward::system::{DatabaseBackend, SystemStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, Set,
    Statement,
};
use std::time::Instant;

const INSTANCE_ID: &str = "instance_id";
const STATUS_CHECKS: &str = "status_checks";

/// Mints the instance id if this database has none yet. Idempotent and race-free across
/// instances starting together (insert-or-ignore on the primary key).
pub async fn ensure_instance(db: &DatabaseConnection) -> Result<String, ServiceError> {
    let row = setting::ActiveModel {
        key: Set(INSTANCE_ID.into()),
        value: Set(uuid::Uuid::new_v4().to_string()),
        updated_at: Set(chrono::Utc::now()),
    };
    setting::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec(db)
        .await?;
    let stored = setting::Entity::find_by_id(INSTANCE_ID.to_string())
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    Ok(stored.value)
}

/// Counts one status check and reads the facts back, in one transaction.
pub async fn status(db: &DatabaseConnection) -> Result<SystemStatus, ServiceError> {
    let started = Instant::now();
    let txn = crate::db::begin_write(db).await?;

    let now = chrono::Utc::now();
    setting::Entity::insert(setting::ActiveModel {
        key: Set(STATUS_CHECKS.into()),
        value: Set("0".into()),
        updated_at: Set(now),
    })
    .on_conflict_do_nothing()
    .exec(&txn)
    .await?;
    // The counter is text (the table is a generic key/value store); increment it in SQL so
    // concurrent checks never lose an update.
    let cast = match txn.get_database_backend() {
        DbBackend::Postgres => "(CAST(value AS BIGINT) + 1)::text",
        _ => "CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
    };
    setting::Entity::update_many()
        .col_expr(setting::Column::Value, Expr::cust(cast))
        .col_expr(setting::Column::UpdatedAt, Expr::value(now))
        .filter(setting::Column::Key.eq(STATUS_CHECKS))
        .exec(&txn)
        .await?;

    let rows = setting::Entity::find().all(&txn).await?;
    let get = |k: &str| rows.iter().find(|r| r.key == k).map(|r| r.value.clone());
    let instance_id = get(INSTANCE_ID).ok_or(ServiceError::NotFound)?;
    let status_checks = get(STATUS_CHECKS)
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();

    let migrations = txn
        .query_one_raw(Statement::from_string(
            txn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    txn.commit().await?;

    Ok(SystemStatus {
        instance_id,
        database: backend_of(db),
        migrations_applied: u32::try_from(migrations).unwrap_or(u32::MAX),
        query_micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        status_checks,
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

pub fn backend_of(db: &DatabaseConnection) -> DatabaseBackend {
    match db.get_database_backend() {
        DbBackend::Postgres => DatabaseBackend::Postgres,
        _ => DatabaseBackend::Sqlite,
    }
}
