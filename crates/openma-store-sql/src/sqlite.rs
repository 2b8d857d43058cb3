//! SQLite: one file in the data dir, WAL journal, foreign keys on.

use std::str::FromStr;
use std::time::Duration;

use openma_core::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::{backend_error, migrate_error};

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(backend_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let file = options.get_filename().to_path_buf();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(backend_error)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(migrate_error)?;
        restrict(&file);
        Ok(SqliteStore { pool })
    }
}

/// Writes a consistent copy of the database at `db` into `target` while it is in use
/// (`VACUUM INTO`: a single read transaction, so writers are not blocked).
pub async fn snapshot(db: &std::path::Path, target: &std::path::Path) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(db).busy_timeout(Duration::from_secs(30)))
        .await
        .map_err(backend_error)?;
    let sql = format!("VACUUM INTO '{}'", target.display().to_string().replace('\'', "''"));
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.map_err(backend_error)?;
    conn.close().await.map_err(backend_error)?;
    restrict(target);
    Ok(())
}

/// The database and its journal are readable by the server's user only.
fn restrict(file: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = file.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::set_permissions(std::path::Path::new(&p), std::fs::Permissions::from_mode(0o600));
        }
    }
}

crate::sql_store!(SqliteStore, sqlx::Sqlite, "SELECT 'sqlite ' || sqlite_version()", None);
