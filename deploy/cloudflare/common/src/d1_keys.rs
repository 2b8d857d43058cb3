//! The [`KeyStore`] port on D1: tenants and API keys in the same tables, with the same
//! columns, as the native SQLite store.

use async_trait::async_trait;
use openma_core::ports::KeyStore;
use openma_core::{ApiKey, StoreError, Tenant, TenantId};
use openma_types::Timestamp;
use serde::Deserialize;

use crate::d1::{D1, micros, opt_micros};
use crate::send;

const KEY_COLUMNS: &str = "id, tenant_id, name, prefix, hash, created_at, last_used_at, revoked_at";

#[derive(Deserialize)]
struct TenantRow {
    id: String,
    name: String,
    created_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(r: TenantRow) -> Self {
        Tenant { id: TenantId::from_trusted(r.id), name: r.name, created_at: Timestamp::from_micros(r.created_at) }
    }
}

#[derive(Deserialize)]
struct KeyRow {
    id: String,
    tenant_id: String,
    name: String,
    prefix: String,
    hash: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<KeyRow> for ApiKey {
    fn from(r: KeyRow) -> Self {
        ApiKey {
            id: r.id,
            tenant_id: TenantId::from_trusted(r.tenant_id),
            name: r.name,
            prefix: r.prefix,
            hash: r.hash,
            created_at: Timestamp::from_micros(r.created_at),
            last_used_at: r.last_used_at.map(Timestamp::from_micros),
            revoked_at: r.revoked_at.map(Timestamp::from_micros),
        }
    }
}

#[async_trait]
impl KeyStore for D1 {
    async fn insert_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
            &[t.id.as_str().into(), t.name.as_str().into(), micros(t.created_at)],
        ))
        .map(drop)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows: Vec<TenantRow> = send!(self.all("SELECT id, name, created_at FROM tenants ORDER BY created_at, id", &[]))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn find_tenant(&self, id_or_name: &str) -> Result<Option<Tenant>, StoreError> {
        let row: Option<TenantRow> =
            send!(self.first("SELECT id, name, created_at FROM tenants WHERE id = ?1 OR name = ?1", &[id_or_name.into()]))?;
        Ok(row.map(Into::into))
    }

    async fn insert_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, hash, created_at, last_used_at, revoked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &[
                k.id.as_str().into(),
                k.tenant_id.as_str().into(),
                k.name.as_str().into(),
                k.prefix.as_str().into(),
                k.hash.as_str().into(),
                micros(k.created_at),
                opt_micros(k.last_used_at),
                opt_micros(k.revoked_at),
            ],
        ))
        .map(drop)
    }

    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1");
        let row: Option<KeyRow> = send!(self.first(&sql, &[hash.into()]))?;
        Ok(row.map(Into::into))
    }

    async fn touch_api_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<(), StoreError> {
        send!(self.run(
            "UPDATE api_keys SET last_used_at = ?3 WHERE tenant_id = ?1 AND id = ?2",
            &[tenant.as_str().into(), id.into(), micros(at)],
        ))
        .map(drop)
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at, id");
        let rows: Vec<KeyRow> = send!(self.all(&sql, &[tenant.as_str().into()]))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn revoke_api_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND (id = ?2 OR prefix = ?2) AND revoked_at IS NULL",
            &[tenant.as_str().into(), id.into(), micros(at)],
        ))?;
        Ok(changed > 0)
    }
}
