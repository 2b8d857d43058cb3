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

crate::sql_store!(PostgresStore, sqlx::Postgres, "SELECT 'postgres ' || current_setting('server_version')", Some("SELECT pg_notify('openma_events', $1)"));

/// PostgreSQL's LISTEN/NOTIFY, the fast path between the nodes of a cluster (who holds
/// what is always in the tables; a notification only says "look now").
pub struct PgBus {
    pool: PgPool,
}

impl PgBus {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(backend_error)?;
        Ok(PgBus { pool })
    }

    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&self.pool).await.map_err(backend_error)?;
        Ok(())
    }

    /// A dedicated connection listening on `channels`.
    pub async fn listen(&self, channels: &[&str]) -> Result<PgSubscription, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(backend_error)?;
        listener.listen_all(channels.iter().copied()).await.map_err(backend_error)?;
        Ok(PgSubscription { listener })
    }
}

pub struct PgSubscription {
    listener: sqlx::postgres::PgListener,
}

/// What a subscription delivered.
#[derive(Debug)]
pub enum Heard {
    Notification { channel: String, payload: String },
    /// The connection dropped and was re-established: notifications may have been missed.
    Reconnected,
}

impl PgSubscription {
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        match self.listener.try_recv().await.map_err(backend_error)? {
            Some(n) => Ok(Heard::Notification { channel: n.channel().to_owned(), payload: n.payload().to_owned() }),
            None => Ok(Heard::Reconnected),
        }
    }
}
