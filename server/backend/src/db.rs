//! Opening the database (SQLite or PostgreSQL, chosen by the URL) and migrating it.

use crate::config::{DatabaseUrl, Settings};
use keyward::system::DatabaseBackend;
use keyward_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("database: cannot create directory {dir} for the SQLite file: {reason}")]
    CreateDir { dir: String, reason: String },
    #[error("database: cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("database: migration failed: {0}")]
    Migrate(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Connects to the configured database. For SQLite the file (and its directory) is created if
/// missing and WAL mode is on; for PostgreSQL the server must exist and be reachable.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, DbSetupError> {
    connect_url(&settings.database_url, settings.db_max_connections).await
}

pub async fn connect_url(
    url: &DatabaseUrl,
    max_connections: u32,
) -> Result<DatabaseConnection, DbSetupError> {
    let backend = url.backend()?;
    let mut options = ConnectOptions::new(url.expose().to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        // SQL statements are not logged: later tables hold ciphertexts and hashes.
        .sqlx_logging(false);
    if backend == DatabaseBackend::Sqlite {
        ensure_sqlite_dir(url.expose())?;
        options.map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    }
    Database::connect(options)
        .await
        .map_err(|e| DbSetupError::Connect {
            url: url.redacted(),
            reason: one_line(&e.to_string()),
        })
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbSetupError> {
    Migrator::up(db, None)
        .await
        .map_err(|e| DbSetupError::Migrate(one_line(&e.to_string())))
}

fn ensure_sqlite_dir(url: &str) -> Result<(), DbSetupError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| DbSetupError::CreateDir {
            dir: dir.display().to_string(),
            reason: e.kind().to_string(),
        })?;
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: it takes the write
/// lock up front (waiting up to the busy timeout), so a transaction that reads and then writes
/// never fails with "database is locked" because another writer (the usage writer, say)
/// committed in between. PostgreSQL ignores the mode.
pub async fn begin_write(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// `SUM(expr)` as a BIGINT, 0 when there are no rows. PostgreSQL sums BIGINT into NUMERIC: it is
/// clamped before being cast back, so that no total can break a report. (SQLite sums integers
/// exactly; every row is bounded, see `keyward::usage::MAX_REPORTED_TOKENS`.)
pub fn sum_expr<C: sea_orm::ConnectionTrait>(db: &C, expr: &str) -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Expr::cust(match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            format!("CAST(LEAST(COALESCE(SUM({expr}), 0), 9223372036854775807) AS BIGINT)")
        }
        _ => format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)"),
    })
}

/// One platform setting (the `settings` table), if set.
pub async fn get_setting<C: sea_orm::ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<String>, crate::error::ServiceError> {
    use sea_orm::EntityTrait;
    Ok(
        crate::entities::setting::Entity::find_by_id(key.to_string())
            .one(db)
            .await?
            .map(|r| r.value),
    )
}

/// Sets one platform setting.
pub async fn put_setting<C: sea_orm::ConnectionTrait>(
    db: &C,
    key: &str,
    value: &str,
) -> Result<(), crate::error::ServiceError> {
    use crate::entities::setting;
    use sea_orm::{EntityTrait, Set, sea_query::OnConflict};
    setting::Entity::insert(setting::ActiveModel {
        key: Set(key.into()),
        value: Set(value.into()),
        updated_at: Set(chrono::Utc::now()),
    })
    .on_conflict(
        OnConflict::column(setting::Column::Key)
            .update_columns([setting::Column::Value, setting::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
