//! The [`SessionStore`] port on D1: the `sessions` table of the native SQLite schema. The
//! rows only; a session's event log lives with its SessionDO, not here.

use async_trait::async_trait;
use openma_core::ports::{DeleteOutcome, ListQuery, SessionFilter, SessionStore};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use openma_types::sessions::Session;
use worker::wasm_bindgen::JsValue;

use crate::d1::{Body, D1, decode_all, encode, micros, num, page_clause};
use crate::send;

impl D1 {
    async fn list_session_rows(&self, tenant: &TenantId, q: &ListQuery, f: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let mut sql = String::from("SELECT body FROM sessions WHERE tenant_id = ?1");
        if let Some(agent) = &f.agent_id {
            args.push(JsValue::from_str(agent));
            sql.push_str(&format!(" AND agent_id = ?{}", args.len()));
            if let Some(v) = f.agent_version {
                args.push(num(v));
                sql.push_str(&format!(" AND agent_version = ?{}", args.len()));
            }
        }
        if !f.statuses.is_empty() {
            let mut marks = Vec::new();
            for s in &f.statuses {
                args.push(JsValue::from_str(s.as_str()));
                marks.push(format!("?{}", args.len()));
            }
            sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
        }
        sql.push_str(&page_clause(q, &mut args));
        decode_all(self.all::<Body>(&sql, &args).await?)
    }

    async fn delete_session_row(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome, StoreError> {
        let deleted = self
            .run(
                "DELETE FROM sessions WHERE tenant_id = ?1 AND id = ?2 AND status NOT IN ('running', 'rescheduling')",
                &[tenant.as_str().into(), id.into()],
            )
            .await?;
        if deleted > 0 {
            return Ok(DeleteOutcome::Deleted);
        }
        let exists: Option<serde_json::Value> =
            self.first("SELECT 1 AS found FROM sessions WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]).await?;
        Ok(if exists.is_some() { DeleteOutcome::Refused } else { DeleteOutcome::NotFound })
    }
}

#[async_trait]
impl SessionStore for D1 {
    async fn insert_session(&self, tenant: &TenantId, s: &Session) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO sessions (tenant_id, id, agent_id, agent_version, environment_id, status, created_at, updated_at, archived, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            &[
                tenant.as_str().into(),
                s.id.as_str().into(),
                s.agent.id.as_str().into(),
                num(s.agent.version),
                s.environment_id.as_str().into(),
                s.status.as_str().into(),
                micros(s.created_at),
                micros(s.updated_at),
                s.archived_at.is_some().into(),
                encode(s).into(),
            ],
        ))
        .map(drop)
    }

    async fn get_session(&self, tenant: &TenantId, id: &str) -> Result<Option<Session>, StoreError> {
        let row: Option<Body> = send!(self.first("SELECT body FROM sessions WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))?;
        row.as_ref().map(Body::decode).transpose()
    }

    async fn update_session(&self, tenant: &TenantId, s: &Session, expected: Timestamp) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE sessions SET status = ?3, updated_at = ?4, archived = ?5, body = ?6 WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?7",
            &[
                tenant.as_str().into(),
                s.id.as_str().into(),
                s.status.as_str().into(),
                micros(s.updated_at),
                s.archived_at.is_some().into(),
                encode(s).into(),
                micros(expected),
            ],
        ))?;
        Ok(changed > 0)
    }

    async fn delete_session(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome, StoreError> {
        send!(self.delete_session_row(tenant, id))
    }

    async fn list_sessions(&self, tenant: &TenantId, query: &ListQuery, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        send!(self.list_session_rows(tenant, query, filter))
    }

    async fn count_running_sessions(&self, tenant: &TenantId) -> Result<i64, StoreError> {
        #[derive(serde::Deserialize)]
        struct Count {
            n: i64,
        }
        let row: Option<Count> = send!(self.first(
            "SELECT COUNT(*) AS n FROM sessions WHERE tenant_id = ?1 AND status IN ('running', 'rescheduling')",
            &[tenant.as_str().into()],
        ))?;
        Ok(row.map_or(0, |c| c.n))
    }
}
