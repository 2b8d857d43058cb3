//! The [`WebhookStore`] port on D1: the native `webhook_endpoints` and `webhook_deliveries`
//! tables (the outbox). Signing secrets arrive sealed. The endpoint cap is checked in the
//! insert's own statement, and a delivery is claimed by a guarded update, so two isolates
//! never send one attempt twice.

use async_trait::async_trait;
use openma_core::ports::{ListQuery, WebhookStore};
use openma_core::webhooks::{AttemptOutcome, QueuedDelivery, StoredWebhookEndpoint};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use openma_types::webhooks::WebhookDeliveryStatus;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;

use crate::d1::{D1, encode, micros, num, page_clause};
use crate::send;

#[derive(Deserialize)]
struct EndpointRow {
    body: String,
    sealed_secret: String,
}

impl EndpointRow {
    fn decode(self) -> Result<StoredWebhookEndpoint, StoreError> {
        let endpoint = serde_json::from_str(&self.body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))?;
        Ok(StoredWebhookEndpoint { endpoint, sealed_secret: self.sealed_secret })
    }
}

const DELIVERY_COLUMNS: &str = "tenant_id, id, endpoint_id, event_id, event_type, payload, status, attempts, next_attempt_at, \
                                last_status, last_error, created_at, updated_at";

#[derive(Deserialize)]
struct DeliveryRow {
    tenant_id: String,
    id: String,
    endpoint_id: String,
    event_id: String,
    event_type: String,
    payload: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl DeliveryRow {
    fn decode(self) -> Result<(TenantId, QueuedDelivery), StoreError> {
        let status = WebhookDeliveryStatus::parse(&self.status).ok_or_else(|| StoreError::Backend(format!("corrupt row: delivery status `{}`", self.status)))?;
        let d = QueuedDelivery {
            id: self.id,
            endpoint_id: self.endpoint_id,
            event_id: self.event_id,
            event_type: self.event_type,
            payload: self.payload,
            status,
            attempts: self.attempts,
            next_attempt_at: Timestamp::from_micros(self.next_attempt_at),
            last_status: self.last_status,
            last_error: self.last_error,
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
        };
        Ok((TenantId::from_trusted(self.tenant_id), d))
    }
}

fn opt_num(v: Option<i64>) -> JsValue {
    v.map_or(JsValue::NULL, num)
}

#[async_trait]
impl WebhookStore for D1 {
    async fn insert_webhook_endpoint(&self, tenant: &TenantId, w: &StoredWebhookEndpoint, max: i64) -> Result<bool, StoreError> {
        let inserted = send!(self.run(
            "INSERT INTO webhook_endpoints (tenant_id, id, created_at, updated_at, archived, body, sealed_secret) \
             SELECT ?1, ?2, ?3, ?4, FALSE, ?5, ?6 WHERE (SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = ?1) < ?7",
            &[
                tenant.as_str().into(),
                w.endpoint.id.as_str().into(),
                micros(w.endpoint.created_at),
                micros(w.endpoint.updated_at),
                encode(&w.endpoint).into(),
                w.sealed_secret.as_str().into(),
                num(max),
            ],
        ))?;
        Ok(inserted > 0)
    }

    async fn get_webhook_endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredWebhookEndpoint>, StoreError> {
        let row: Option<EndpointRow> =
            send!(self.first("SELECT body, sealed_secret FROM webhook_endpoints WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()]))?;
        row.map(EndpointRow::decode).transpose()
    }

    async fn update_webhook_endpoint(&self, tenant: &TenantId, w: &StoredWebhookEndpoint, expected: Timestamp) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE webhook_endpoints SET updated_at = ?3, body = ?4, sealed_secret = ?5 WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?6",
            &[
                tenant.as_str().into(),
                w.endpoint.id.as_str().into(),
                micros(w.endpoint.updated_at),
                encode(&w.endpoint).into(),
                w.sealed_secret.as_str().into(),
                micros(expected),
            ],
        ))?;
        Ok(changed > 0)
    }

    async fn delete_webhook_endpoint(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        // one batch: the delivery log goes with the endpoint (whether or not D1 enforces the cascade)
        let statements = vec![
            self.statement("DELETE FROM webhook_deliveries WHERE tenant_id = ?1 AND endpoint_id = ?2", &[tenant.as_str().into(), id.into()])?,
            self.statement("DELETE FROM webhook_endpoints WHERE tenant_id = ?1 AND id = ?2", &[tenant.as_str().into(), id.into()])?,
        ];
        let changes = send!(self.batch(statements))?;
        Ok(changes.last().copied().unwrap_or(0) > 0)
    }

    async fn list_webhook_endpoints(&self, tenant: &TenantId, q: &ListQuery) -> Result<Vec<StoredWebhookEndpoint>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let sql = format!("SELECT body, sealed_secret FROM webhook_endpoints WHERE tenant_id = ?1{}", page_clause(q, &mut args));
        let rows: Vec<EndpointRow> = send!(self.all(&sql, &args))?;
        rows.into_iter().map(EndpointRow::decode).collect()
    }

    async fn enqueue_webhook_deliveries(&self, tenant: &TenantId, rows: &[QueuedDelivery]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let statements = rows
            .iter()
            .map(|d| {
                // an endpoint deleted meanwhile gets nothing (the EXISTS guard), not an error
                self.statement(
                    "INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, payload, status, attempts, \
                     next_attempt_at, last_status, last_error, created_at, updated_at) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, ?10, ?10 \
                     WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE tenant_id = ?1 AND id = ?3) \
                     ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING",
                    &[
                        tenant.as_str().into(),
                        d.id.as_str().into(),
                        d.endpoint_id.as_str().into(),
                        d.event_id.as_str().into(),
                        d.event_type.as_str().into(),
                        d.payload.as_str().into(),
                        d.status.as_str().into(),
                        num(d.attempts),
                        micros(d.next_attempt_at),
                        micros(d.created_at),
                    ],
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        send!(self.batch(statements))?;
        Ok(())
    }

    async fn due_webhook_deliveries(&self, now: Timestamp, limit: u32) -> Result<Vec<(TenantId, QueuedDelivery)>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at ASC, created_at ASC, id ASC LIMIT ?2"
        );
        let rows: Vec<DeliveryRow> = send!(self.all(&sql, &[micros(now), num(i64::from(limit))]))?;
        rows.into_iter().map(DeliveryRow::decode).collect()
    }

    async fn claim_webhook_delivery(&self, tenant: &TenantId, id: &str, attempts_seen: i64, now: Timestamp, lease_until: Timestamp) -> Result<bool, StoreError> {
        let changed = send!(self.run(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?4, updated_at = ?5 \
             WHERE tenant_id = ?1 AND id = ?2 AND status = 'pending' AND attempts = ?3 AND next_attempt_at <= ?5",
            &[tenant.as_str().into(), id.into(), num(attempts_seen), micros(lease_until), micros(now)],
        ))?;
        Ok(changed > 0)
    }

    async fn record_webhook_attempt(&self, tenant: &TenantId, id: &str, o: &AttemptOutcome) -> Result<(), StoreError> {
        send!(self.run(
            "UPDATE webhook_deliveries SET status = ?3, next_attempt_at = ?4, last_status = ?5, last_error = ?6, updated_at = ?7 \
             WHERE tenant_id = ?1 AND id = ?2",
            &[
                tenant.as_str().into(),
                id.into(),
                o.status.as_str().into(),
                micros(o.next_attempt_at),
                opt_num(o.last_status),
                o.last_error.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                micros(o.at),
            ],
        ))?;
        Ok(())
    }

    async fn list_webhook_deliveries(&self, tenant: &TenantId, endpoint_id: &str, q: &ListQuery) -> Result<Vec<QueuedDelivery>, StoreError> {
        let mut args = vec![JsValue::from_str(tenant.as_str()), JsValue::from_str(endpoint_id)];
        let q = ListQuery { include_archived: true, ..q.clone() };
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = ?1 AND endpoint_id = ?2{}", page_clause(&q, &mut args));
        let rows: Vec<DeliveryRow> = send!(self.all(&sql, &args))?;
        rows.into_iter().map(|r| r.decode().map(|(_, d)| d)).collect()
    }
}
