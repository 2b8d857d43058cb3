//! The [`FileStore`] port on D1: the `files` table of the native SQLite schema. A blob is
//! shared by an upload and its session mount copies, so deleting a row reports its blob key
//! only when no live row still refers to it — decided inside one D1 batch (a transaction)
//! with the delete, as the native store decides it inside one SQL transaction.

use async_trait::async_trait;
use openma_core::files::{FileOrigin, StoredFile};
use openma_core::ports::{FileStore, ListQuery};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;

use crate::d1::{D1, encode, micros, num, opt_micros, page_clause, store_error};
use crate::send;

const COLUMNS: &str = "body, blob_key, sha256, origin, path, purged";

#[derive(Deserialize)]
struct FileRow {
    #[serde(default)]
    tenant_id: Option<String>,
    body: String,
    blob_key: String,
    sha256: String,
    origin: String,
    path: Option<String>,
    /// SQLite's booleans are integers.
    purged: f64,
}

impl FileRow {
    fn decode(self) -> Result<StoredFile, StoreError> {
        Ok(StoredFile {
            meta: serde_json::from_str(&self.body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))?,
            origin: FileOrigin::parse(&self.origin).ok_or_else(|| StoreError::Backend(format!("corrupt row: file origin `{}`", self.origin)))?,
            blob_key: self.blob_key,
            sha256: self.sha256,
            path: self.path,
            purged: self.purged != 0.0,
        })
    }
}

#[derive(Deserialize)]
struct Key {
    blob_key: String,
}

fn insert_args(tenant: &TenantId, f: &StoredFile) -> Vec<JsValue> {
    vec![
        tenant.as_str().into(),
        f.meta.id.as_str().into(),
        micros(f.meta.created_at),
        f.scope_id().map_or(JsValue::NULL, JsValue::from_str),
        f.origin.as_str().into(),
        f.path.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        f.blob_key.as_str().into(),
        f.sha256.as_str().into(),
        opt_micros(f.meta.expires_at),
        f.purged.into(),
        encode(&f.meta).into(),
    ]
}

const INSERT: &str = "INSERT INTO files (tenant_id, id, created_at, scope_id, origin, path, blob_key, sha256, expires_at, purged, body) ";

/// `?n, ?n+1, …` for `count` values bound after `first - 1` others.
fn marks(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
}

impl D1 {
    async fn file_rows(&self, sql: &str, args: &[JsValue]) -> Result<Vec<StoredFile>, StoreError> {
        self.all::<FileRow>(sql, args).await?.into_iter().map(FileRow::decode).collect()
    }

    /// Runs `statements` in one transaction and returns the rows of the last one.
    async fn batch_last<T: for<'a> Deserialize<'a>>(&self, statements: Vec<worker::D1PreparedStatement>) -> Result<(Vec<u64>, Vec<T>), StoreError> {
        let results = self.batch_results(statements).await?;
        let changes = results.iter().map(|r| Ok(r.meta().map_err(store_error)?.and_then(|m| m.changes).unwrap_or(0) as u64)).collect::<Result<Vec<_>, StoreError>>()?;
        let last = results.last().map(|r| r.results::<T>().map_err(store_error)).transpose()?.unwrap_or_default();
        Ok((changes, last))
    }

    /// Which of `keys` a live (unpurged) file row still refers to.
    fn keys_in_use(&self, keys: &[String]) -> Result<worker::D1PreparedStatement, StoreError> {
        let args: Vec<JsValue> = keys.iter().map(|k| JsValue::from_str(k)).collect();
        self.statement(&format!("SELECT DISTINCT blob_key FROM files WHERE NOT purged AND blob_key IN ({})", marks(1, keys.len())), &args)
    }
}

#[async_trait]
impl FileStore for D1 {
    async fn insert_file(&self, tenant: &TenantId, f: &StoredFile) -> Result<(), StoreError> {
        send!(self.run(&format!("{INSERT}VALUES ({})", marks(1, 11)), &insert_args(tenant, f)))?;
        Ok(())
    }

    async fn insert_scoped_file(&self, tenant: &TenantId, f: &StoredFile, max: i64) -> Result<bool, StoreError> {
        // one statement: the count and the insert cannot be split by another writer
        let mut args = insert_args(tenant, f);
        args.push(num(max));
        let inserted = send!(self.run(
            &format!("{INSERT}SELECT {} WHERE (SELECT COUNT(*) FROM files WHERE tenant_id = ?1 AND scope_id = ?4 AND origin = ?5) < ?12", marks(1, 11)),
            &args,
        ))?;
        Ok(inserted > 0)
    }

    async fn get_file(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredFile>, StoreError> {
        let row: Option<FileRow> = send!(self.first(&format!("SELECT {COLUMNS} FROM files WHERE tenant_id = ?1 AND id = ?2"), &[tenant.as_str().into(), id.into()]))?;
        row.map(FileRow::decode).transpose()
    }

    async fn list_files(&self, tenant: &TenantId, q: &ListQuery, scope: Option<&str>) -> Result<Vec<StoredFile>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let scope_sql = match scope {
            Some(s) => {
                args.push(s.into());
                " AND scope_id = ?2"
            }
            None => " AND scope_id IS NULL",
        };
        let sql = format!("SELECT {COLUMNS} FROM files WHERE tenant_id = ?1{scope_sql}{}", page_clause(q, &mut args));
        send!(self.file_rows(&sql, &args))
    }

    async fn get_files(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<StoredFile>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        args.extend(ids.iter().map(|id| JsValue::from_str(id)));
        send!(self.file_rows(&format!("SELECT {COLUMNS} FROM files WHERE tenant_id = ?1 AND id IN ({})", marks(2, ids.len())), &args))
    }

    async fn delete_file(&self, tenant: &TenantId, id: &str) -> Result<Option<Option<String>>, StoreError> {
        let Some(Key { blob_key }) = send!(self.first::<Key>("SELECT blob_key FROM files WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))? else {
            return Ok(None);
        };
        let delete = self.statement("DELETE FROM files WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()])?;
        let keys = [blob_key];
        let (changes, used) = send!(self.batch_last::<Key>(vec![delete, self.keys_in_use(&keys)?]))?;
        if changes[0] == 0 {
            return Ok(None); // deleted by another request in between
        }
        let [blob_key] = keys;
        Ok(Some(if used.is_empty() { Some(blob_key) } else { None }))
    }

    async fn delete_scoped_files(&self, tenant: &TenantId, session_id: &str) -> Result<Vec<String>, StoreError> {
        let args = [JsValue::from_str(tenant.as_str()), session_id.into()];
        let keys: Vec<String> = send!(self.all::<Key>("SELECT DISTINCT blob_key FROM files WHERE tenant_id = ?1 AND scope_id = ?2", &args))?
            .into_iter()
            .map(|k| k.blob_key)
            .collect();
        let delete = self.statement("DELETE FROM files WHERE tenant_id = ?1 AND scope_id = ?2", &args)?;
        if keys.is_empty() {
            send!(self.batch(vec![delete]))?;
            return Ok(Vec::new());
        }
        // A row added to the scope between the two calls is deleted too; its blob is then
        // left behind (space, not correctness), as the session it belonged to is gone.
        let (_, used) = send!(self.batch_last::<Key>(vec![delete, self.keys_in_use(&keys)?]))?;
        Ok(keys.into_iter().filter(|k| !used.iter().any(|u| &u.blob_key == k)).collect())
    }

    async fn expired_files(&self, now: Timestamp, limit: u32) -> Result<Vec<(TenantId, StoredFile)>, StoreError> {
        let rows: Vec<FileRow> = send!(self.all(
            &format!("SELECT tenant_id, {COLUMNS} FROM files WHERE expires_at IS NOT NULL AND NOT purged AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2"),
            &[micros(now), num(i64::from(limit))],
        ))?;
        rows.into_iter()
            .map(|mut r| {
                let tenant = TenantId::from_trusted(r.tenant_id.take().unwrap_or_default());
                Ok((tenant, r.decode()?))
            })
            .collect()
    }

    async fn stored_files(&self, tenant: &TenantId, before: Timestamp) -> Result<Vec<StoredFile>, StoreError> {
        send!(self.file_rows(
            &format!("SELECT {COLUMNS} FROM files WHERE tenant_id = ?1 AND created_at < ?2 AND NOT purged AND origin <> 'mount' ORDER BY created_at, id"),
            &[tenant.as_str().into(), micros(before)],
        ))
    }

    async fn purge_file_blob(&self, tenant: &TenantId, id: &str) -> Result<Option<String>, StoreError> {
        let args = [JsValue::from_str(tenant.as_str()), id.into()];
        let purge = self.statement("UPDATE files SET purged = TRUE WHERE tenant_id = ?1 AND id = ?2 AND NOT purged", &args)?;
        // the purged row keeps its key, so the check finds it by the row
        let used = self.statement(
            "SELECT f.blob_key FROM files f JOIN files p ON p.tenant_id = ?1 AND p.id = ?2 AND f.blob_key = p.blob_key WHERE NOT f.purged LIMIT 1",
            &args,
        )?;
        let key = self.statement("SELECT blob_key FROM files WHERE tenant_id = ?1 AND id = ?2", &args)?;
        let results = send!(self.batch_results(vec![purge, used, key]))?;
        let purged = results[0].meta().map_err(store_error)?.and_then(|m| m.changes).unwrap_or(0) > 0;
        let in_use = !results[1].results::<Key>().map_err(store_error)?.is_empty();
        let key = results[2].results::<Key>().map_err(store_error)?.into_iter().next();
        Ok(match (purged, in_use, key) {
            (true, false, Some(k)) => Some(k.blob_key),
            _ => None,
        })
    }
}
