//! PostgreSQL: the shared database of cluster mode.

use std::time::Duration;

use openma_core::StoreError;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::{backend_error, migrate_error};

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(backend_error)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(migrate_error)?;
        Ok(PostgresStore { pool })
    }
}

crate::sql_store!(PostgresStore, sqlx::Postgres, "SELECT 'postgres ' || current_setting('server_version')");
