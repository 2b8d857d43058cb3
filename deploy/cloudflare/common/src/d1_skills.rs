//! The [`SkillStore`] port on D1: the `skills` and `skill_versions` tables of the native
//! SQLite schema. Where the native store locks the skill's row inside a transaction, a
//! version change here is one D1 batch guarded by the skill's `updated_at` as read (every
//! change moves it forward): the version row is written only when the guarded update of
//! the skill matched, and a batch that lost a race is read again and retried.

use async_trait::async_trait;
use openma_core::ports::{ListQuery, SkillStore};
use openma_core::skills::{StoredSkill, StoredSkillVersion, VersionRemoval};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;

use crate::d1::{Body, D1, decode_all, encode, micros, num, page_clause};
use crate::send;

/// Tries a version change gets before it is reported as contended.
const ATTEMPTS: usize = 8;

#[derive(Deserialize)]
struct SkillRow {
    body: String,
    updated_at: f64,
}

#[derive(Deserialize)]
struct Key {
    blob_key: String,
}

/// A version to delete: its blob (`None`: no such version) and the newest other one.
#[derive(Deserialize)]
struct Removal {
    blob_key: Option<String>,
    latest: Option<String>,
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("corrupt row: {e}"))
}

fn contended(skill_id: &str) -> StoreError {
    StoreError::Backend(format!("skill `{skill_id}` kept changing under a version change; try again"))
}

const INSERT_VERSION: &str = "INSERT INTO skill_versions (tenant_id, skill_id, id, created_at, blob_key, size_bytes, sha256, body) ";

fn version_args(tenant: &TenantId, v: &StoredSkillVersion) -> Vec<JsValue> {
    vec![
        tenant.as_str().into(),
        v.version.skill_id.as_str().into(),
        v.version.id.as_str().into(),
        micros(v.version.created_at),
        v.blob_key.as_str().into(),
        num(i64::try_from(v.size_bytes).unwrap_or(i64::MAX)),
        v.sha256.as_str().into(),
        encode(v).into(),
    ]
}

impl D1 {
    /// The skill and the `updated_at` its row holds (the guard of a version change).
    async fn skill_row(&self, tenant: &TenantId, id: &str) -> Result<Option<(StoredSkill, f64)>, StoreError> {
        let row: Option<SkillRow> = send!(self.first("SELECT body, updated_at FROM skills WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))?;
        row.map(|r| Ok((serde_json::from_str(&r.body).map_err(corrupt)?, r.updated_at))).transpose()
    }

    /// The update of a skill's row, matching only while its `updated_at` is still `seen`.
    fn guarded_skill_update(&self, tenant: &TenantId, s: &StoredSkill, seen: f64) -> Result<worker::D1PreparedStatement, StoreError> {
        self.statement(
            "UPDATE skills SET updated_at = ?3, body = ?4 WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?5",
            &[tenant.as_str().into(), s.skill.id.as_str().into(), micros(s.skill.updated_at), encode(s).into(), JsValue::from_f64(seen)],
        )
    }
}

#[async_trait]
impl SkillStore for D1 {
    async fn insert_skill(&self, tenant: &TenantId, s: &StoredSkill, first: &StoredSkillVersion) -> Result<(), StoreError> {
        let skill = self.statement(
            "INSERT INTO skills (tenant_id, id, name, created_at, updated_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[
                tenant.as_str().into(),
                s.skill.id.as_str().into(),
                s.name.as_str().into(),
                micros(s.skill.created_at),
                micros(s.skill.updated_at),
                encode(s).into(),
            ],
        )?;
        let version = self.statement(&format!("{INSERT_VERSION}VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"), &version_args(tenant, first))?;
        send!(self.batch(vec![skill, version]))?;
        Ok(())
    }

    async fn get_skill(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredSkill>, StoreError> {
        Ok(self.skill_row(tenant, id).await?.map(|(s, _)| s))
    }

    async fn find_skill_by_name(&self, tenant: &TenantId, name: &str) -> Result<Option<StoredSkill>, StoreError> {
        let row: Option<Body> = send!(self.first("SELECT body FROM skills WHERE tenant_id = ?1 AND name = ?2", &[tenant.as_str().into(), name.into()]))?;
        row.map(|b| b.decode()).transpose()
    }

    async fn list_skills(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<StoredSkill>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let page = page_clause(&ListQuery { include_archived: true, ..q.clone() }, &mut args);
        decode_all(send!(self.all::<Body>(&format!("SELECT body FROM skills WHERE tenant_id = ?1{page}"), &args))?)
    }

    async fn delete_skill(&self, tenant: &TenantId, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let args = [JsValue::from_str(tenant.as_str()), JsValue::from_str(id)];
        let statements = vec![
            self.statement("SELECT blob_key FROM skill_versions WHERE tenant_id = ?1 AND skill_id = ?2", &args)?,
            self.statement("DELETE FROM skill_versions WHERE tenant_id = ?1 AND skill_id = ?2", &args)?,
            self.statement("DELETE FROM skills WHERE tenant_id = ?1 AND id = ?2", &args)?,
        ];
        let results = send!(self.batch_results(statements))?;
        let gone = results.get(2).and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(0);
        if gone == 0 {
            return Ok(None);
        }
        let keys: Vec<Key> = results.first().map(|r| r.results::<Key>().map_err(crate::d1::store_error)).transpose()?.unwrap_or_default();
        Ok(Some(keys.into_iter().map(|k| k.blob_key).collect()))
    }

    async fn insert_skill_version(&self, tenant: &TenantId, v: &StoredSkillVersion) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let Some((mut skill, seen)) = self.skill_row(tenant, &v.version.skill_id).await? else { return Ok(false) };
            skill.skill.latest_version_id = v.version.id.clone();
            skill.skill.updated_at = v.version.created_at.max(skill.skill.updated_at);
            let update = self.guarded_skill_update(tenant, &skill, seen)?;
            // written only when the guarded update matched (`changes()` is its row count)
            let insert = self.statement(&format!("{INSERT_VERSION}SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE changes() = 1"), &version_args(tenant, v))?;
            let changed = send!(self.batch(vec![update, insert]))?;
            if changed.first() == Some(&1) {
                return Ok(true);
            }
        }
        Err(contended(&v.version.skill_id))
    }

    async fn get_skill_version(&self, tenant: &TenantId, skill_id: &str, id: &str) -> Result<Option<StoredSkillVersion>, StoreError> {
        let row: Option<Body> = send!(self.first(
            "SELECT body FROM skill_versions WHERE tenant_id = ?1 AND skill_id = ?2 AND id = ?3",
            &[tenant.as_str().into(), skill_id.into(), id.into()]
        ))?;
        row.map(|b| b.decode()).transpose()
    }

    async fn list_skill_versions(&self, tenant: &TenantId, skill_id: &str, q: &ListQuery) -> Result<Vec<StoredSkillVersion>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str()), JsValue::from_str(skill_id)];
        let page = page_clause(&ListQuery { include_archived: true, ..q.clone() }, &mut args);
        decode_all(send!(self.all::<Body>(&format!("SELECT body FROM skill_versions WHERE tenant_id = ?1 AND skill_id = ?2{page}"), &args))?)
    }

    async fn delete_skill_version(&self, tenant: &TenantId, skill_id: &str, id: &str, now: Timestamp) -> Result<VersionRemoval, StoreError> {
        let args = [JsValue::from_str(tenant.as_str()), JsValue::from_str(skill_id), JsValue::from_str(id)];
        for _ in 0..ATTEMPTS {
            let Some((mut skill, seen)) = self.skill_row(tenant, skill_id).await? else { return Ok(VersionRemoval::NotFound) };
            // the version's blob and the newest other version, in one read
            let found: Option<Removal> = send!(self.first(
                "SELECT (SELECT blob_key FROM skill_versions WHERE tenant_id = ?1 AND skill_id = ?2 AND id = ?3) AS blob_key, \
                 (SELECT id FROM skill_versions WHERE tenant_id = ?1 AND skill_id = ?2 AND id <> ?3 ORDER BY created_at DESC, id DESC LIMIT 1) AS latest",
                &args
            ))?;
            let Some(Removal { blob_key: Some(blob_key), latest }) = found else { return Ok(VersionRemoval::NotFound) };
            let Some(latest) = latest else { return Ok(VersionRemoval::LastVersion) };
            skill.skill.latest_version_id = latest;
            // strictly later, so the guard of a racing change sees this one
            skill.skill.updated_at = now.strictly_after(skill.skill.updated_at);
            let update = self.guarded_skill_update(tenant, &skill, seen)?;
            let delete = self.statement("DELETE FROM skill_versions WHERE tenant_id = ?1 AND skill_id = ?2 AND id = ?3 AND changes() = 1", &args)?;
            let changed = send!(self.batch(vec![update, delete]))?;
            if changed.first() == Some(&1) {
                return Ok(if changed.get(1) == Some(&1) { VersionRemoval::Removed { blob_key } } else { VersionRemoval::NotFound });
            }
        }
        Err(contended(skill_id))
    }
}
