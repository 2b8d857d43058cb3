//! Storage adapters for the core's [`Store`] port: SQLite (the embedded default, in WAL
//! mode) and PostgreSQL (cluster mode).
//!
//! Both speak the same SQL, so the statements are written once ([`sql_store!`]) and
//! compiled against each driver's concrete types — keeping sqlx's type checking, which
//! `sqlx::Any` would lose. Each dialect has its own migrations.
#![forbid(unsafe_code)]

use std::sync::Arc;

use openma_core::{Store, StoreError};

mod macros;
pub mod postgres;
pub mod sqlite;

pub use postgres::{Heard, PgBus, PgSubscription, PostgresStore};
pub use sqlite::SqliteStore;

/// Opens the store a database URL names (`sqlite://…` or `postgres://…`) and applies its
/// migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Backend(format!(
            "unsupported database URL `{}`: use sqlite://PATH or postgres://…",
            redact_url(url)
        )))
    }
}

/// A URL with its password replaced, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &creds[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn backend_error(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error()
        && db.is_unique_violation()
    {
        return StoreError::Duplicate(db.message().to_owned());
    }
    StoreError::Backend(e.to_string())
}

pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Backend(format!("migration failed: {e}"))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain objects serialise to JSON")
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(super::redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
