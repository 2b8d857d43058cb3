//! The [`VaultStore`] port on D1: the `vaults` and `credentials` tables of the native
//! SQLite schema. Credential secrets arrive sealed; each guarded change is one statement
//! or one atomic batch, as the native store's transactions are.

use async_trait::async_trait;
use openma_core::ports::{ListQuery, VaultStore};
use openma_core::vaults::StoredCredential;
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use openma_types::vaults::Vault;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;

use crate::d1::{Body, D1, decode_all, encode, micros, num, page_clause};
use crate::send;

const CREDENTIAL_COLUMNS: &str = "body, unique_key, secrets";

#[derive(Deserialize)]
struct CredentialRow {
    body: String,
    unique_key: String,
    secrets: String,
}

impl CredentialRow {
    fn decode(self) -> Result<StoredCredential, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Backend(format!("corrupt row: {e}"));
        Ok(StoredCredential {
            credential: serde_json::from_str(&self.body).map_err(corrupt)?,
            unique_key: self.unique_key,
            secrets: serde_json::from_str(&self.secrets).map_err(corrupt)?,
        })
    }
}

/// A timestamp as it appears inside a JSON body.
fn json_time(t: Timestamp) -> JsValue {
    let v = serde_json::to_value(t).expect("timestamps serialise");
    JsValue::from_str(v.as_str().unwrap_or_default())
}

impl D1 {
    async fn update_vault_rows(&self, tenant: &TenantId, v: &Vault, expected: Timestamp) -> Result<bool, StoreError> {
        let mut statements = vec![self.statement(
            "UPDATE vaults SET updated_at = ?3, archived = ?4, body = ?5 WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?6",
            &[tenant.as_str().into(), v.id.as_str().into(), micros(v.updated_at), v.archived_at.is_some().into(), encode(v).into(), micros(expected)],
        )?];
        if let Some(at) = v.archived_at {
            // Archiving cascades, only when the guarded update matched (`changes()` is the
            // row count of the statement before, in the same transaction): credentials
            // are archived and their secrets purged.
            statements.push(self.statement(
                "UPDATE credentials SET archived = 1, updated_at = ?3, secrets = '{}', \
                 body = json_set(body, '$.archived_at', ?4, '$.updated_at', ?4) \
                 WHERE tenant_id = ?1 AND vault_id = ?2 AND NOT archived AND changes() = 1",
                &[tenant.as_str().into(), v.id.as_str().into(), micros(at), json_time(at)],
            )?);
        }
        let changed = self.batch(statements).await?;
        Ok(changed.first().copied().unwrap_or(0) > 0)
    }

    async fn delete_vault_rows(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let credentials = self.statement("DELETE FROM credentials WHERE tenant_id = ?1 AND vault_id = ?2", &[tenant.as_str().into(), id.into()])?;
        let vault = self.statement("DELETE FROM vaults WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()])?;
        let changed = self.batch(vec![credentials, vault]).await?;
        Ok(changed.get(1).copied().unwrap_or(0) > 0)
    }

    async fn list_vault_rows(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<Vault>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let sql = format!("SELECT body FROM vaults WHERE tenant_id = ?1{}", page_clause(q, &mut args));
        decode_all(self.all::<Body>(&sql, &args).await?)
    }

    async fn insert_credential_row(&self, tenant: &TenantId, c: &StoredCredential, max_active: i64) -> Result<bool, StoreError> {
        // One statement: the count and the insert cannot be split by another writer.
        let inserted = self
            .run(
                "INSERT INTO credentials (tenant_id, vault_id, id, created_at, updated_at, archived, unique_key, body, secrets) \
                 SELECT ?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8 \
                 WHERE (SELECT COUNT(*) FROM credentials WHERE tenant_id = ?1 AND vault_id = ?2 AND NOT archived) < ?9",
                &[
                    tenant.as_str().into(),
                    c.credential.vault_id.as_str().into(),
                    c.credential.id.as_str().into(),
                    micros(c.credential.created_at),
                    micros(c.credential.updated_at),
                    c.unique_key.as_str().into(),
                    encode(&c.credential).into(),
                    encode(&c.secrets).into(),
                    num(max_active),
                ],
            )
            .await?;
        Ok(inserted > 0)
    }

    async fn list_credential_rows(&self, tenant: &TenantId, vault_id: &str, q: &ListQuery) -> Result<Vec<StoredCredential>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str()), JsValue::from_str(vault_id)];
        let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE tenant_id = ?1 AND vault_id = ?2{}", page_clause(q, &mut args));
        self.all::<CredentialRow>(&sql, &args).await?.into_iter().map(CredentialRow::decode).collect()
    }
}

#[async_trait]
impl VaultStore for D1 {
    async fn insert_vault(&self, tenant: &TenantId, v: &Vault) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO vaults (tenant_id, id, created_at, updated_at, archived, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[tenant.as_str().into(), v.id.as_str().into(), micros(v.created_at), micros(v.updated_at), v.archived_at.is_some().into(), encode(v).into()],
        ))
        .map(drop)
    }

    async fn get_vault(&self, tenant: &TenantId, id: &str) -> Result<Option<Vault>, StoreError> {
        let row: Option<Body> = send!(self.first("SELECT body FROM vaults WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))?;
        row.as_ref().map(Body::decode).transpose()
    }

    async fn update_vault(&self, tenant: &TenantId, vault: &Vault, expected: Timestamp) -> Result<bool, StoreError> {
        send!(self.update_vault_rows(tenant, vault, expected))
    }

    async fn delete_vault(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        send!(self.delete_vault_rows(tenant, id))
    }

    async fn list_vaults(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<Vault>, StoreError> {
        send!(self.list_vault_rows(tenant, query))
    }

    async fn insert_credential(&self, tenant: &TenantId, c: &StoredCredential, max_active: i64) -> Result<bool, StoreError> {
        send!(self.insert_credential_row(tenant, c, max_active))
    }

    async fn get_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> Result<Option<StoredCredential>, StoreError> {
        let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE tenant_id = ?1 AND vault_id = ?2 AND id = ?3");
        let row: Option<CredentialRow> = send!(self.first(&sql, &[tenant.as_str().into(), vault_id.into(), id.into()]))?;
        row.map(CredentialRow::decode).transpose()
    }

    async fn update_credential(&self, tenant: &TenantId, c: &StoredCredential, expected: Timestamp) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE credentials SET updated_at = ?3, archived = ?4, body = ?5, secrets = ?6 WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?7",
            &[
                tenant.as_str().into(),
                c.credential.id.as_str().into(),
                micros(c.credential.updated_at),
                c.credential.archived_at.is_some().into(),
                encode(&c.credential).into(),
                encode(&c.secrets).into(),
                micros(expected),
            ],
        ))?;
        Ok(changed > 0)
    }

    async fn delete_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "DELETE FROM credentials WHERE tenant_id = ?1 AND vault_id = ?2 AND id = ?3",
            &[tenant.as_str().into(), vault_id.into(), id.into()],
        ))?;
        Ok(changed > 0)
    }

    async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, query: &ListQuery) -> Result<Vec<StoredCredential>, StoreError> {
        send!(self.list_credential_rows(tenant, vault_id, query))
    }
}
