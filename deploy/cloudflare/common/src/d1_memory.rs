//! The [`MemoryStorage`] port on D1: the `memory_stores`, `memories` and `memory_versions`
//! tables of the native SQLite schema. A write is one atomic batch — hold the open store,
//! write the memory, append its version — each step running only if the one before
//! changed a row (`changes()`), so its outcome reads off the batch's change counts.
//! Contents are BLOBs of UTF-8, as natively; they cross D1 as hex so any text (NUL
//! included) round-trips.

use async_trait::async_trait;
use openma_core::memory::{ListBound, Memories};
use openma_core::ports::{ListQuery, MemoryStorage, MemoryWrite, VersionFilter};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use openma_types::memory::{Actor, Memory, MemoryStore, MemoryVersion};
use serde::Deserialize;
use worker::D1PreparedStatement;
use worker::wasm_bindgen::JsValue;

use crate::adapters::{WorkerClock, WorkerIds};
use crate::d1::{Body, D1, decode_all, encode, micros, num, page_clause};
use crate::send;

const MEMORY_COLUMNS: &str = "store_id, id, path, content_sha256, content_size, version_id, created_at, updated_at";
/// A nullable content column as hex (`hex(NULL)` would read as empty content).
const CONTENT_HEX: &str = "CASE WHEN content IS NULL THEN NULL ELSE hex(content) END AS content_hex";
const HOLD_OPEN_STORE: &str = "UPDATE memory_stores SET updated_at = updated_at WHERE tenant_id = ?1 AND id = ?2 AND NOT archived";

impl D1 {
    /// The core's memory service over this database, announcing changes to its outbox —
    /// what `openma-main`'s API and the SessionDO's mount sync both use.
    pub fn memories(&self) -> Memories<'_> {
        Memories { store: self, clock: &WorkerClock, ids: &WorkerIds, announcer: self }
    }
}

fn hex(text: &str) -> String {
    crate::errors::hex(text.as_bytes())
}

fn unhex(h: &str) -> Result<String, StoreError> {
    let corrupt = || StoreError::Backend("corrupt row: memory content".into());
    let bytes = (0..h.len())
        .step_by(2)
        .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()).ok_or_else(corrupt))
        .collect::<Result<Vec<u8>, _>>()?;
    String::from_utf8(bytes).map_err(|_| StoreError::Backend("corrupt row: memory content is not UTF-8".into()))
}

#[derive(Deserialize)]
struct MemoryRow {
    store_id: String,
    id: String,
    path: String,
    content_sha256: String,
    content_size: i64,
    version_id: String,
    created_at: i64,
    updated_at: i64,
    #[serde(default)]
    content_hex: Option<String>,
}

impl MemoryRow {
    fn decode(self) -> Result<Memory, StoreError> {
        Ok(Memory {
            id: self.id,
            tag: Default::default(),
            memory_store_id: self.store_id,
            path: self.path,
            content: self.content_hex.as_deref().map(unhex).transpose()?,
            content_sha256: self.content_sha256,
            content_size_bytes: self.content_size,
            memory_version_id: self.version_id,
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
        })
    }
}

#[derive(Deserialize)]
struct VersionRow {
    body: String,
    #[serde(default)]
    content_hex: Option<String>,
}

impl VersionRow {
    fn decode(self) -> Result<MemoryVersion, StoreError> {
        let mut v: MemoryVersion = serde_json::from_str(&self.body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))?;
        v.content = self.content_hex.as_deref().map(unhex).transpose()?;
        Ok(v)
    }
}

fn actor_columns(a: Option<&Actor>) -> (JsValue, JsValue) {
    let (kind, id) = match a {
        None => return (JsValue::NULL, JsValue::NULL),
        Some(Actor::SessionActor { session_id }) => ("session_actor", session_id),
        Some(Actor::ApiActor { api_key_id }) => ("api_actor", api_key_id),
        Some(Actor::UserActor { user_id }) => ("user_actor", user_id),
        Some(Actor::ServiceAccountActor { service_account_id }) => ("service_account_actor", service_account_id),
    };
    (kind.into(), id.as_str().into())
}

/// The row-count of step `i` of a batch.
fn step(changed: &[u64], i: usize) -> u64 {
    changed.get(i).copied().unwrap_or(0)
}

impl D1 {
    /// Appends `v`, only when the statement before it in the batch changed a row.
    fn append_version(&self, tenant: &TenantId, v: &MemoryVersion) -> Result<D1PreparedStatement, StoreError> {
        let (actor_type, actor_id) = actor_columns(v.created_by.as_ref());
        let body = MemoryVersion { content: None, ..v.clone() };
        self.statement(
            "INSERT INTO memory_versions (tenant_id, store_id, id, memory_id, operation, actor_type, actor_id, created_at, content, body) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, unhex(?9), ?10 WHERE changes() = 1",
            &[
                tenant.as_str().into(),
                v.memory_store_id.as_str().into(),
                v.id.as_str().into(),
                v.memory_id.as_str().into(),
                v.operation.as_str().into(),
                actor_type,
                actor_id,
                micros(v.created_at),
                v.content.as_deref().map_or(JsValue::NULL, |c| hex(c).into()),
                encode(&body).into(),
            ],
        )
    }

    fn hold_open_store(&self, tenant: &TenantId, store_id: &str) -> Result<D1PreparedStatement, StoreError> {
        self.statement(HOLD_OPEN_STORE, &[tenant.as_str().into(), store_id.into()])
    }

    /// What a write refused by the unique path index ran into.
    async fn path_holder(&self, tenant: &TenantId, store_id: &str, path: &str) -> Result<MemoryWrite, StoreError> {
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let row: Option<Id> = self
            .first("SELECT id FROM memories WHERE tenant_id = ?1 AND store_id = ?2 AND path = ?3", &[tenant.as_str().into(), store_id.into(), path.into()])
            .await?;
        Ok(row.map_or(MemoryWrite::Stale, |r| MemoryWrite::PathTaken(r.id)))
    }

    async fn insert_memory_rows(&self, tenant: &TenantId, m: &Memory, v: &MemoryVersion, max: i64) -> Result<MemoryWrite, StoreError> {
        let insert = self.statement(
            "INSERT INTO memories (tenant_id, store_id, id, path, content, content_sha256, content_size, version_id, created_at, updated_at) \
             SELECT ?1, ?2, ?3, ?4, unhex(?5), ?6, ?7, ?8, ?9, ?10 \
             WHERE changes() = 1 AND (SELECT COUNT(*) FROM memories WHERE tenant_id = ?1 AND store_id = ?2) < ?11",
            &[
                tenant.as_str().into(),
                m.memory_store_id.as_str().into(),
                m.id.as_str().into(),
                m.path.as_str().into(),
                hex(m.content.as_deref().unwrap_or_default()).into(),
                m.content_sha256.as_str().into(),
                num(m.content_size_bytes),
                m.memory_version_id.as_str().into(),
                micros(m.created_at),
                micros(m.updated_at),
                num(max),
            ],
        )?;
        let batch = vec![self.hold_open_store(tenant, &m.memory_store_id)?, insert, self.append_version(tenant, v)?];
        match self.batch(batch).await {
            Err(StoreError::Duplicate(_)) => self.path_holder(tenant, &m.memory_store_id, &m.path).await,
            Err(e) => Err(e),
            Ok(c) if step(&c, 0) == 0 => Ok(MemoryWrite::StoreClosed),
            Ok(c) if step(&c, 1) == 0 => Ok(MemoryWrite::StoreFull),
            Ok(_) => Ok(MemoryWrite::Done),
        }
    }

    async fn update_memory_rows(&self, tenant: &TenantId, m: &Memory, v: &MemoryVersion, expected: &str) -> Result<MemoryWrite, StoreError> {
        let update = self.statement(
            "UPDATE memories SET path = ?4, content = unhex(?5), content_sha256 = ?6, content_size = ?7, version_id = ?8, updated_at = ?9 \
             WHERE tenant_id = ?1 AND store_id = ?2 AND id = ?3 AND version_id = ?10 AND changes() = 1",
            &[
                tenant.as_str().into(),
                m.memory_store_id.as_str().into(),
                m.id.as_str().into(),
                m.path.as_str().into(),
                hex(m.content.as_deref().unwrap_or_default()).into(),
                m.content_sha256.as_str().into(),
                num(m.content_size_bytes),
                m.memory_version_id.as_str().into(),
                micros(m.updated_at),
                expected.into(),
            ],
        )?;
        let batch = vec![self.hold_open_store(tenant, &m.memory_store_id)?, update, self.append_version(tenant, v)?];
        match self.batch(batch).await {
            Err(StoreError::Duplicate(_)) => self.path_holder(tenant, &m.memory_store_id, &m.path).await,
            Err(e) => Err(e),
            Ok(c) if step(&c, 0) == 0 => Ok(MemoryWrite::StoreClosed),
            Ok(c) if step(&c, 1) == 0 => Ok(MemoryWrite::Stale),
            Ok(_) => Ok(MemoryWrite::Done),
        }
    }

    async fn delete_memory_rows(&self, tenant: &TenantId, v: &MemoryVersion, expected: &str) -> Result<MemoryWrite, StoreError> {
        let delete = self.statement(
            "DELETE FROM memories WHERE tenant_id = ?1 AND store_id = ?2 AND id = ?3 AND version_id = ?4 AND changes() = 1",
            &[tenant.as_str().into(), v.memory_store_id.as_str().into(), v.memory_id.as_str().into(), expected.into()],
        )?;
        let changed = self.batch(vec![self.hold_open_store(tenant, &v.memory_store_id)?, delete, self.append_version(tenant, v)?]).await?;
        Ok(match (step(&changed, 0), step(&changed, 1)) {
            (0, _) => MemoryWrite::StoreClosed,
            (_, 0) => MemoryWrite::Stale,
            _ => MemoryWrite::Done,
        })
    }

    async fn delete_store_rows(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let args = [JsValue::from_str(tenant.as_str()), JsValue::from_str(id)];
        let batch = vec![
            self.statement("DELETE FROM memory_stores WHERE tenant_id = ?1 AND id = ?2", &args)?,
            self.statement("DELETE FROM memory_versions WHERE tenant_id = ?1 AND store_id = ?2", &args)?,
            self.statement("DELETE FROM memories WHERE tenant_id = ?1 AND store_id = ?2", &args)?,
        ];
        Ok(step(&self.batch(batch).await?, 0) > 0)
    }

    async fn list_store_rows(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<MemoryStore>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let sql = format!("SELECT body FROM memory_stores WHERE tenant_id = ?1{}", page_clause(q, &mut args));
        decode_all(self.all::<Body>(&sql, &args).await?)
    }

    async fn list_memory_rows(
        &self,
        tenant: &TenantId,
        store_id: &str,
        prefix: &str,
        bound: Option<&ListBound>,
        limit: u32,
        with_content: bool,
    ) -> Result<Vec<Memory>, StoreError> {
        // the prefix ends with `/`: its paths lie in [prefix, prefix with `/` → `0`)
        let mut upper = prefix[..prefix.len() - 1].to_owned();
        upper.push('0');
        let mut args: Vec<JsValue> = vec![tenant.as_str().into(), store_id.into(), prefix.into(), upper.into()];
        let mut sql = format!(
            "SELECT {MEMORY_COLUMNS}{} FROM memories WHERE tenant_id = ?1 AND store_id = ?2 AND path >= ?3 AND path < ?4",
            if with_content { format!(", {CONTENT_HEX}") } else { String::new() }
        );
        match bound {
            None => {}
            Some(ListBound::After(p)) => {
                args.push(p.as_str().into());
                sql.push_str(" AND path > ?5");
            }
            Some(ListBound::From(p)) => {
                args.push(p.as_str().into());
                sql.push_str(" AND path >= ?5");
            }
        }
        args.push(num(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY path LIMIT ?{}", args.len()));
        self.all::<MemoryRow>(&sql, &args).await?.into_iter().map(MemoryRow::decode).collect()
    }

    async fn list_memory_version_rows(
        &self,
        tenant: &TenantId,
        store_id: &str,
        f: &VersionFilter,
        q: &ListQuery,
        with_content: bool,
    ) -> Result<Vec<MemoryVersion>, StoreError> {
        let mut args: Vec<JsValue> = vec![tenant.as_str().into(), store_id.into()];
        let mut sql = format!(
            "SELECT body{} FROM memory_versions WHERE tenant_id = ?1 AND store_id = ?2",
            if with_content { format!(", {CONTENT_HEX}") } else { String::new() }
        );
        let bind = |args: &mut Vec<JsValue>, sql: &mut String, column: &str, v: JsValue| {
            args.push(v);
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        };
        if let Some(m) = &f.memory_id {
            bind(&mut args, &mut sql, "memory_id", m.as_str().into());
        }
        if let Some(op) = f.operation {
            bind(&mut args, &mut sql, "operation", op.as_str().into());
        }
        for (kind, id) in [("api_actor", &f.api_key_id), ("session_actor", &f.session_id), ("service_account_actor", &f.service_account_id)] {
            if let Some(id) = id {
                bind(&mut args, &mut sql, "actor_type", kind.into());
                bind(&mut args, &mut sql, "actor_id", id.as_str().into());
            }
        }
        let q = ListQuery { include_archived: true, ..q.clone() };
        sql.push_str(&page_clause(&q, &mut args));
        self.all::<VersionRow>(&sql, &args).await?.into_iter().map(VersionRow::decode).collect()
    }
}

#[async_trait]
impl MemoryStorage for D1 {
    async fn insert_memory_store(&self, tenant: &TenantId, m: &MemoryStore) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO memory_stores (tenant_id, id, created_at, updated_at, archived, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[tenant.as_str().into(), m.id.as_str().into(), micros(m.created_at), micros(m.updated_at), m.archived_at.is_some().into(), encode(m).into()],
        ))
        .map(drop)
    }

    async fn get_memory_store(&self, tenant: &TenantId, id: &str) -> Result<Option<MemoryStore>, StoreError> {
        let row: Option<Body> =
            send!(self.first("SELECT body FROM memory_stores WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))?;
        row.as_ref().map(Body::decode).transpose()
    }

    async fn update_memory_store(&self, tenant: &TenantId, m: &MemoryStore, expected: Timestamp) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE memory_stores SET updated_at = ?3, archived = ?4, body = ?5 WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?6",
            &[tenant.as_str().into(), m.id.as_str().into(), micros(m.updated_at), m.archived_at.is_some().into(), encode(m).into(), micros(expected)],
        ))?;
        Ok(changed > 0)
    }

    async fn delete_memory_store(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        send!(self.delete_store_rows(tenant, id))
    }

    async fn list_memory_stores(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<MemoryStore>, StoreError> {
        send!(self.list_store_rows(tenant, query))
    }

    async fn insert_memory(&self, tenant: &TenantId, memory: &Memory, version: &MemoryVersion, max: i64) -> Result<MemoryWrite, StoreError> {
        send!(self.insert_memory_rows(tenant, memory, version, max))
    }

    async fn get_memory(&self, tenant: &TenantId, store_id: &str, id: &str) -> Result<Option<Memory>, StoreError> {
        let sql = format!("SELECT {MEMORY_COLUMNS}, {CONTENT_HEX} FROM memories WHERE tenant_id = ?1 AND store_id = ?2 AND id = ?3");
        let row: Option<MemoryRow> = send!(self.first(&sql, &[tenant.as_str().into(), store_id.into(), id.into()]))?;
        row.map(MemoryRow::decode).transpose()
    }

    async fn update_memory(&self, tenant: &TenantId, memory: &Memory, version: &MemoryVersion, expected_version: &str) -> Result<MemoryWrite, StoreError> {
        send!(self.update_memory_rows(tenant, memory, version, expected_version))
    }

    async fn delete_memory(&self, tenant: &TenantId, version: &MemoryVersion, expected_version: &str) -> Result<MemoryWrite, StoreError> {
        send!(self.delete_memory_rows(tenant, version, expected_version))
    }

    async fn list_memories(
        &self,
        tenant: &TenantId,
        store_id: &str,
        prefix: &str,
        bound: Option<&ListBound>,
        limit: u32,
        with_content: bool,
    ) -> Result<Vec<Memory>, StoreError> {
        send!(self.list_memory_rows(tenant, store_id, prefix, bound, limit, with_content))
    }

    async fn get_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str) -> Result<Option<MemoryVersion>, StoreError> {
        let sql = format!("SELECT body, {CONTENT_HEX} FROM memory_versions WHERE tenant_id = ?1 AND store_id = ?2 AND id = ?3");
        let row: Option<VersionRow> = send!(self.first(&sql, &[tenant.as_str().into(), store_id.into(), id.into()]))?;
        row.map(VersionRow::decode).transpose()
    }

    async fn list_memory_versions(
        &self,
        tenant: &TenantId,
        store_id: &str,
        filter: &VersionFilter,
        query: &ListQuery,
        with_content: bool,
    ) -> Result<Vec<MemoryVersion>, StoreError> {
        send!(self.list_memory_version_rows(tenant, store_id, filter, query, with_content))
    }

    async fn redact_memory_version(&self, tenant: &TenantId, v: &MemoryVersion) -> Result<bool, StoreError> {
        let body = MemoryVersion { content: None, ..v.clone() };
        let changed = send!(self.run(
            "UPDATE memory_versions SET content = NULL, body = ?4 WHERE tenant_id = ?1 AND store_id = ?2 AND id = ?3",
            &[tenant.as_str().into(), v.memory_store_id.as_str().into(), v.id.as_str().into(), encode(&body).into()],
        ))?;
        Ok(changed > 0)
    }
}
