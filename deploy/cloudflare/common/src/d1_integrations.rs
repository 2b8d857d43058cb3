//! The [`IntegrationStore`] port on D1: the native `integrations`, `integration_threads`
//! and `integration_deliveries` tables. Secrets arrive sealed.

use async_trait::async_trait;
use openma_core::integrations::StoredIntegration;
use openma_core::ports::{IntegrationStore, ListQuery};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;

use crate::d1::{D1, encode, micros, page_clause};
use crate::send;

#[derive(Deserialize)]
struct IntegrationRow {
    #[serde(default)]
    tenant_id: Option<String>,
    body: String,
    sealed_signing_secret: String,
    sealed_credential: String,
}

impl IntegrationRow {
    fn decode(self) -> Result<StoredIntegration, StoreError> {
        let integration = serde_json::from_str(&self.body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))?;
        Ok(StoredIntegration { integration, sealed_signing_secret: self.sealed_signing_secret, sealed_credential: self.sealed_credential })
    }
}

#[derive(Deserialize)]
struct SessionRow {
    session_id: String,
}

#[derive(Deserialize)]
struct ThreadRow {
    integration_id: String,
    thread: String,
}

const COLUMNS: &str = "body, sealed_signing_secret, sealed_credential";

#[async_trait]
impl IntegrationStore for D1 {
    async fn insert_integration(&self, tenant: &TenantId, i: &StoredIntegration) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO integrations (tenant_id, id, created_at, updated_at, body, sealed_signing_secret, sealed_credential) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &[
                tenant.as_str().into(),
                i.integration.id.as_str().into(),
                micros(i.integration.created_at),
                micros(i.integration.updated_at),
                encode(&i.integration).into(),
                i.sealed_signing_secret.as_str().into(),
                i.sealed_credential.as_str().into(),
            ],
        ))?;
        Ok(())
    }

    async fn get_integration(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredIntegration>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM integrations WHERE tenant_id = ?1 AND id = ?2");
        let row: Option<IntegrationRow> = send!(self.first(&sql, &[tenant.as_str().into(), id.into()]))?;
        row.map(IntegrationRow::decode).transpose()
    }

    async fn find_integration(&self, id: &str) -> Result<Option<(TenantId, StoredIntegration)>, StoreError> {
        let sql = format!("SELECT tenant_id, {COLUMNS} FROM integrations WHERE id = ?1");
        let row: Option<IntegrationRow> = send!(self.first(&sql, &[id.into()]))?;
        match row {
            Some(mut r) => {
                let tenant = r.tenant_id.take().ok_or_else(|| StoreError::Backend("no tenant_id".into()))?;
                Ok(Some((TenantId::from_trusted(tenant), r.decode()?)))
            }
            None => Ok(None),
        }
    }

    async fn list_integrations(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<StoredIntegration>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let sql = format!("SELECT {COLUMNS} FROM integrations WHERE tenant_id = ?1{}", page_clause(q, &mut args));
        let rows: Vec<IntegrationRow> = send!(self.all(&sql, &args))?;
        rows.into_iter().map(IntegrationRow::decode).collect()
    }

    async fn reseal_integration(&self, tenant: &TenantId, i: &StoredIntegration) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE integrations SET sealed_signing_secret = ?3, sealed_credential = ?4 WHERE tenant_id = ?1 AND id = ?2",
            &[tenant.as_str().into(), i.integration.id.as_str().into(), i.sealed_signing_secret.as_str().into(), i.sealed_credential.as_str().into()],
        ))?;
        Ok(changed > 0)
    }

    async fn delete_integration(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        // one batch: the threads and deliveries go only with the row (same tenant)
        let owned = "EXISTS (SELECT 1 FROM integrations WHERE tenant_id = ?1 AND id = ?2)";
        let statements = vec![
            self.statement(&format!("DELETE FROM integration_threads WHERE integration_id = ?2 AND {owned}"), &[tenant.as_str().into(), id.into()])?,
            self.statement(&format!("DELETE FROM integration_deliveries WHERE integration_id = ?2 AND {owned}"), &[tenant.as_str().into(), id.into()])?,
            self.statement("DELETE FROM integrations WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()])?,
        ];
        let changes = send!(self.batch(statements))?;
        Ok(changes.last().copied().unwrap_or(0) > 0)
    }

    async fn bind_integration_thread(&self, tenant: &TenantId, integration_id: &str, thread: &str, session_id: &str, at: Timestamp) -> Result<String, StoreError> {
        send!(self.run(
            "INSERT INTO integration_threads (tenant_id, integration_id, thread, session_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (integration_id, thread) DO NOTHING",
            &[tenant.as_str().into(), integration_id.into(), thread.into(), session_id.into(), micros(at)],
        ))?;
        self.integration_thread_session(integration_id, thread).await?.ok_or_else(|| StoreError::Backend("a thread binding vanished".into()))
    }

    async fn integration_thread_session(&self, integration_id: &str, thread: &str) -> Result<Option<String>, StoreError> {
        let row: Option<SessionRow> = send!(self.first(
            "SELECT session_id FROM integration_threads WHERE integration_id = ?1 AND thread = ?2",
            &[integration_id.into(), thread.into()],
        ))?;
        Ok(row.map(|r| r.session_id))
    }

    async fn session_integration_thread(&self, session_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row: Option<ThreadRow> = send!(self.first("SELECT integration_id, thread FROM integration_threads WHERE session_id = ?1", &[session_id.into()]))?;
        Ok(row.map(|r| (r.integration_id, r.thread)))
    }

    async fn record_integration_delivery(&self, integration_id: &str, delivery_id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let inserted = send!(self.run(
            "INSERT INTO integration_deliveries (integration_id, delivery_id, received_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (integration_id, delivery_id) DO NOTHING",
            &[integration_id.into(), delivery_id.into(), micros(at)],
        ))?;
        Ok(inserted > 0)
    }
}
