//! The [`ModelCardStore`] port on D1: the `model_cards` table of the native SQLite schema
//! (its partial unique index keeps one unarchived default per tenant). Keys arrive sealed.

use async_trait::async_trait;
use openma_core::model_cards::StoredModelCard;
use openma_core::ports::{ListQuery, ModelCardStore};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;

use crate::d1::{D1, encode, micros, num, page_clause};
use crate::send;

#[derive(Deserialize)]
struct CardRow {
    body: String,
    sealed_key: Option<String>,
}

impl CardRow {
    fn decode(self) -> Result<StoredModelCard, StoreError> {
        let card = serde_json::from_str(&self.body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))?;
        Ok(StoredModelCard { card, sealed_key: self.sealed_key })
    }
}

fn sealed(c: &StoredModelCard) -> JsValue {
    c.sealed_key.as_deref().map_or(JsValue::NULL, JsValue::from_str)
}

impl D1 {
    async fn card_rows(&self, sql: &str, args: &[JsValue]) -> Result<Vec<StoredModelCard>, StoreError> {
        self.all::<CardRow>(sql, args).await?.into_iter().map(CardRow::decode).collect()
    }
}

#[async_trait]
impl ModelCardStore for D1 {
    async fn insert_model_card(&self, tenant: &TenantId, c: &StoredModelCard, max_active: i64) -> Result<bool, StoreError> {
        // one statement: the count and the insert cannot be split by another writer
        let inserted = send!(self.run(
            "INSERT INTO model_cards (tenant_id, id, created_at, updated_at, archived, is_default, body, sealed_key) \
             SELECT ?1, ?2, ?3, ?4, 0, ?5, ?6, ?7 \
             WHERE (SELECT COUNT(*) FROM model_cards WHERE tenant_id = ?1 AND NOT archived) < ?8",
            &[
                tenant.as_str().into(),
                c.card.id.as_str().into(),
                micros(c.card.created_at),
                micros(c.card.updated_at),
                c.card.is_default.into(),
                encode(&c.card).into(),
                sealed(c),
                num(max_active),
            ],
        ))?;
        Ok(inserted > 0)
    }

    async fn get_model_card(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredModelCard>, StoreError> {
        let row: Option<CardRow> = send!(self.first("SELECT body, sealed_key FROM model_cards WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))?;
        row.map(CardRow::decode).transpose()
    }

    async fn update_model_card(&self, tenant: &TenantId, c: &StoredModelCard, expected: Timestamp) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE model_cards SET updated_at = ?3, archived = ?4, is_default = ?5, body = ?6, sealed_key = ?7 \
             WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?8",
            &[
                tenant.as_str().into(),
                c.card.id.as_str().into(),
                micros(c.card.updated_at),
                c.card.archived_at.is_some().into(),
                c.card.is_default.into(),
                encode(&c.card).into(),
                sealed(c),
                micros(expected),
            ],
        ))?;
        Ok(changed > 0)
    }

    async fn delete_model_card(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        Ok(send!(self.run("DELETE FROM model_cards WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))? > 0)
    }

    async fn list_model_cards(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<StoredModelCard>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let sql = format!("SELECT body, sealed_key FROM model_cards WHERE tenant_id = ?1{}", page_clause(q, &mut args));
        send!(self.card_rows(&sql, &args))
    }

    async fn active_model_cards(&self, tenant: &TenantId) -> Result<Vec<StoredModelCard>, StoreError> {
        send!(self.card_rows(
            "SELECT body, sealed_key FROM model_cards WHERE tenant_id = ?1 AND NOT archived ORDER BY created_at ASC, id ASC",
            &[tenant.as_str().into()],
        ))
    }
}
