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
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(backend_error)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(migrate_error)?;
        Ok(SqliteStore { pool })
    }
}

crate::sql_store!(SqliteStore, sqlx::Sqlite, "SELECT 'sqlite ' || sqlite_version()");
