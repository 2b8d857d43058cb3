//! The [`EnvironmentStore`] port on D1: the `environments` table of the native SQLite
//! schema; a delete is refused in the same statement that checks for live sessions.

use async_trait::async_trait;
use openma_core::ports::{DeleteOutcome, EnvironmentStore, ListQuery};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use openma_types::environments::Environment;
use worker::wasm_bindgen::JsValue;

use crate::d1::{Body, D1, decode_all, encode, micros, page_clause};
use crate::send;

impl D1 {
    async fn list_environment_rows(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<Environment>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let sql = format!("SELECT body FROM environments WHERE tenant_id = ?1{}", page_clause(q, &mut args));
        decode_all(self.all::<Body>(&sql, &args).await?)
    }

    async fn delete_environment_row(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome, StoreError> {
        let deleted = self
            .run(
                "DELETE FROM environments WHERE tenant_id = ?1 AND id = ?2 AND NOT EXISTS \
                 (SELECT 1 FROM sessions WHERE tenant_id = ?1 AND environment_id = ?2 AND status <> 'terminated')",
                &[tenant.as_str().into(), id.into()],
            )
            .await?;
        if deleted > 0 {
            return Ok(DeleteOutcome::Deleted);
        }
        let exists: Option<serde_json::Value> =
            self.first("SELECT 1 AS found FROM environments WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]).await?;
        Ok(if exists.is_some() { DeleteOutcome::Refused } else { DeleteOutcome::NotFound })
    }
}

#[async_trait]
impl EnvironmentStore for D1 {
    async fn insert_environment(&self, tenant: &TenantId, e: &Environment, is_default: bool) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO environments (tenant_id, id, created_at, updated_at, archived, is_default, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &[
                tenant.as_str().into(),
                e.id.as_str().into(),
                micros(e.created_at),
                micros(e.updated_at),
                e.archived_at.is_some().into(),
                is_default.into(),
                encode(e).into(),
            ],
        ))
        .map(drop)
    }

    async fn get_environment(&self, tenant: &TenantId, id: &str) -> Result<Option<Environment>, StoreError> {
        let row: Option<Body> =
            send!(self.first("SELECT body FROM environments WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))?;
        row.as_ref().map(Body::decode).transpose()
    }

    async fn get_default_environment(&self, tenant: &TenantId) -> Result<Option<Environment>, StoreError> {
        let row: Option<Body> =
            send!(self.first("SELECT body FROM environments WHERE tenant_id = ?1 AND is_default AND NOT archived", &[tenant.as_str().into()]))?;
        row.as_ref().map(Body::decode).transpose()
    }

    async fn update_environment(&self, tenant: &TenantId, e: &Environment, expected: Timestamp) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE environments SET updated_at = ?3, archived = ?4, body = ?5 WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?6",
            &[tenant.as_str().into(), e.id.as_str().into(), micros(e.updated_at), e.archived_at.is_some().into(), encode(e).into(), micros(expected)],
        ))?;
        Ok(changed > 0)
    }

    async fn delete_environment(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome, StoreError> {
        send!(self.delete_environment_row(tenant, id))
    }

    async fn list_environments(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<Environment>, StoreError> {
        send!(self.list_environment_rows(tenant, query))
    }
}
