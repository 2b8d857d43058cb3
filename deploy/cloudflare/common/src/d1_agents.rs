//! The [`AgentStore`] port on D1: the `agents` and `agent_versions` tables of the native
//! SQLite schema, each change one atomic batch.

use async_trait::async_trait;
use openma_core::ports::{AgentStore, ListQuery};
use openma_core::{StoreError, TenantId};
use openma_types::agents::Agent;
use worker::wasm_bindgen::JsValue;

use crate::d1::{Body, D1, decode_all, encode, micros, num, page_clause};
use crate::send;

const INSERT_VERSION: &str = "INSERT INTO agent_versions (tenant_id, agent_id, version, body) VALUES (?1, ?2, ?3, ?4)";

impl D1 {
    async fn insert_agent_rows(&self, tenant: &TenantId, a: &Agent) -> Result<(), StoreError> {
        let body = encode(a);
        let agent = self.statement(
            "INSERT INTO agents (tenant_id, id, version, created_at, archived, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[tenant.as_str().into(), a.id.as_str().into(), num(a.version), micros(a.created_at), a.archived_at.is_some().into(), body.as_str().into()],
        )?;
        let version = self.statement(INSERT_VERSION, &[tenant.as_str().into(), a.id.as_str().into(), num(a.version), body.as_str().into()])?;
        self.batch(vec![agent, version]).await.map(drop)
    }

    async fn update_agent_rows(&self, tenant: &TenantId, a: &Agent, expected_version: i64) -> Result<bool, StoreError> {
        let body = encode(a);
        let mut statements = vec![self.statement(
            "UPDATE agents SET version = ?3, archived = ?4, body = ?5 WHERE tenant_id = ?1 AND id = ?2 AND version = ?6",
            &[tenant.as_str().into(), a.id.as_str().into(), num(a.version), a.archived_at.is_some().into(), body.as_str().into(), num(expected_version)],
        )?];
        if a.version != expected_version {
            // Recorded only when the guarded update matched: `changes()` is the row count of
            // the statement before it, in the same transaction.
            statements.push(self.statement(
                "INSERT INTO agent_versions (tenant_id, agent_id, version, body) SELECT ?1, ?2, ?3, ?4 WHERE changes() = 1",
                &[tenant.as_str().into(), a.id.as_str().into(), num(a.version), body.as_str().into()],
            )?);
        }
        let changed = self.batch(statements).await?;
        Ok(changed.first().copied().unwrap_or(0) > 0)
    }

    async fn list_agent_rows(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<Agent>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let sql = format!("SELECT body FROM agents WHERE tenant_id = ?1{}", page_clause(q, &mut args));
        decode_all(self.all::<Body>(&sql, &args).await?)
    }

    async fn list_agent_version_rows(&self, tenant: &TenantId, id: &str, below: Option<i64>, limit: u32) -> Result<Vec<Agent>, StoreError> {
        let rows: Vec<Body> = match below {
            Some(v) => {
                self.all(
                    "SELECT body FROM agent_versions WHERE tenant_id = ?1 AND agent_id = ?2 AND version < ?3 ORDER BY version DESC LIMIT ?4",
                    &[tenant.as_str().into(), id.into(), num(v), num(i64::from(limit))],
                )
                .await?
            }
            None => {
                self.all(
                    "SELECT body FROM agent_versions WHERE tenant_id = ?1 AND agent_id = ?2 ORDER BY version DESC LIMIT ?3",
                    &[tenant.as_str().into(), id.into(), num(i64::from(limit))],
                )
                .await?
            }
        };
        decode_all(rows)
    }
}

#[async_trait]
impl AgentStore for D1 {
    async fn insert_agent(&self, tenant: &TenantId, agent: &Agent) -> Result<(), StoreError> {
        send!(self.insert_agent_rows(tenant, agent))
    }

    async fn get_agent(&self, tenant: &TenantId, id: &str) -> Result<Option<Agent>, StoreError> {
        let row: Option<Body> = send!(self.first("SELECT body FROM agents WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))?;
        row.as_ref().map(Body::decode).transpose()
    }

    async fn get_agent_version(&self, tenant: &TenantId, id: &str, version: i64) -> Result<Option<Agent>, StoreError> {
        let row: Option<Body> = send!(self.first(
            "SELECT body FROM agent_versions WHERE tenant_id = ?1 AND agent_id = ?2 AND version = ?3",
            &[tenant.as_str().into(), id.into(), num(version)],
        ))?;
        row.as_ref().map(Body::decode).transpose()
    }

    async fn update_agent(&self, tenant: &TenantId, agent: &Agent, expected_version: i64) -> Result<bool, StoreError> {
        send!(self.update_agent_rows(tenant, agent, expected_version))
    }

    async fn list_agents(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<Agent>, StoreError> {
        send!(self.list_agent_rows(tenant, query))
    }

    async fn list_agent_versions(&self, tenant: &TenantId, id: &str, below: Option<i64>, limit: u32) -> Result<Vec<Agent>, StoreError> {
        send!(self.list_agent_version_rows(tenant, id, below, limit))
    }
}
