//! `GET /v1/usage`: the ledger summed by agent, session, model, kind and/or day, as JSON
//! or CSV.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openma_core::ledger;
use openma_types::usage::{UsageFormat, UsageParams, UsageReport};
use openma_types::{ErrorEnvelope, Timestamp};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/usage", get(usage))
        .route("/v1/usage/export", get(export))
        .route("/v1/usage/export/ack", axum::routing::post(export_ack))
}

/// Usage and list cost from the ledger.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorEnvelope)))]
pub async fn usage(State(app): State<AppState>, Caller(t): Caller, ApiQuery(q): ApiQuery<UsageParams>) -> Result<Response, ApiError> {
    let query = ledger::usage_query(&q);
    let rows = app.platform.store.usage_report(&t, &query).await.map_err(openma_core::DomainError::from)?;
    if q.format.unwrap_or_default() == UsageFormat::Csv {
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], ledger::usage_csv(&query.group_by, rows)).into_response());
    }
    Ok(Json(ledger::usage_report(rows)).into_response())
}

// ---- export --------------------------------------------------------------------------

/// Rows younger than this are not exported yet: on PostgreSQL a row with a lower
/// sequence number can commit after a higher one, and a cursor must never skip it.
pub const EXPORT_SETTLE_MICROS: i64 = 2_000_000;

fn ack_key(tenant: &openma_core::TenantId) -> String {
    format!("usage_export_ack:{}", tenant.as_str())
}

fn encode_cursor(seq: i64) -> String {
    format!("ledger_{seq}")
}

fn decode_cursor(c: &str) -> Result<i64, ApiError> {
    c.strip_prefix("ledger_").and_then(|n| n.parse().ok()).filter(|n: &i64| *n >= 0).ok_or_else(|| ApiError::bad_request(format!("`{c}` is not an export cursor")))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Continue after this cursor; omit to continue after the last acknowledged one.
    #[serde(default)]
    pub after: Option<String>,
    /// Rows per page, 1 to 1000 (default 500).
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportEntry {
    pub cursor: String,
    pub id: String,
    pub session_id: String,
    pub agent_id: String,
    pub model: String,
    pub kind: String,
    pub quantity: i64,
    /// Micro-dollars per million tokens, or per hour for `runtime_ms`.
    pub unit_price_micros: i64,
    pub amount_micros: i64,
    pub currency: String,
    /// The event that caused the entry; with `kind` it identifies the entry for good.
    pub source: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportPage {
    pub data: Vec<ExportEntry>,
    /// Pass as `after` to continue, and acknowledge it once the page is stored.
    pub next_cursor: String,
    pub acknowledged_cursor: String,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ExportAck {
    pub cursor: String,
}

async fn acknowledged(app: &AppState, tenant: &openma_core::TenantId) -> Result<i64, ApiError> {
    let stored = app.platform.store.get_meta(&ack_key(tenant)).await.map_err(openma_core::DomainError::from)?;
    Ok(stored.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Pull ledger entries for an external billing system, in a stable order.
#[utoipa::path(get, path = "/v1/usage/export", tag = "usage", params(ExportParams),
    responses((status = 200, body = ExportPage), (status = 400, body = ErrorEnvelope)))]
pub async fn export(State(app): State<AppState>, Caller(t): Caller, ApiQuery(q): ApiQuery<ExportParams>) -> Result<Json<ExportPage>, ApiError> {
    let limit = match q.limit {
        None => 500,
        Some(l) if (1..=1000).contains(&l) => l as u32,
        Some(l) => return Err(ApiError::bad_request(format!("`limit` must be between 1 and 1000, got {l}"))),
    };
    let acked = acknowledged(&app, &t).await?;
    let after = match &q.after {
        Some(c) => decode_cursor(c)?,
        None => acked,
    };
    let settled = app.platform.clock.now().as_micros() - EXPORT_SETTLE_MICROS;
    let mut rows = app.platform.store.ledger_after(&t, after, settled, limit + 1).await.map_err(openma_core::DomainError::from)?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = rows.last().map(|(seq, _)| *seq).unwrap_or(after);
    let data = rows
        .into_iter()
        .map(|(seq, e)| ExportEntry {
            cursor: encode_cursor(seq),
            id: e.id,
            session_id: e.session_id,
            agent_id: e.agent_id,
            model: e.model,
            kind: e.kind,
            quantity: e.quantity,
            unit_price_micros: e.unit_price,
            amount_micros: e.amount,
            currency: e.currency,
            source: e.source,
            created_at: e.created_at,
        })
        .collect();
    Ok(Json(ExportPage { data, next_cursor: encode_cursor(next), acknowledged_cursor: encode_cursor(acked), has_more }))
}

/// Acknowledge everything up to a cursor: the next export without `after` starts there.
/// Acknowledgements only move forward.
#[utoipa::path(post, path = "/v1/usage/export/ack", tag = "usage", request_body = ExportAck,
    responses((status = 200, body = ExportAck), (status = 400, body = ErrorEnvelope)))]
pub async fn export_ack(State(app): State<AppState>, Caller(t): Caller, crate::extract::ApiJson(req): crate::extract::ApiJson<ExportAck>) -> Result<Json<ExportAck>, ApiError> {
    let seq = decode_cursor(&req.cursor)?;
    let acked = acknowledged(&app, &t).await?;
    let kept = seq.max(acked);
    app.platform.store.put_meta(&ack_key(&t), &kept.to_string(), false).await.map_err(openma_core::DomainError::from)?;
    Ok(Json(ExportAck { cursor: encode_cursor(kept) }))
}
