//! `GET /v1/usage` on Workers: the ledger the SessionDOs write to D1, summed by agent,
//! session, model, kind and/or day, as JSON or CSV, and `/v1/usage/export` (+ `/ack`) for a
//! billing system — the native report and export (`openma_core::ledger`).

use openma_core::TenantId;
use openma_core::ledger;
use openma_core::ports::LedgerStore;
use openma_core::Clock;
use openma_types::usage::{ExportAck, ExportParams, UsageFormat, UsageParams};
use worker::{Method, Response};

use crate::adapters::WorkerClock;
use crate::api::{ApiRequest, json};
use crate::d1::D1;
use crate::errors::ApiError;

/// Serves `rest` (the path after `/v1/usage`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    match (req.method(), rest) {
        (Method::Get, []) => Some(usage(req, db, tenant).await),
        (Method::Get, ["export"]) => Some(async { json(ledger::export_page(db, tenant, &req.query::<ExportParams>()?, WorkerClock.now()).await?) }.await),
        (Method::Post, ["export", "ack"]) => Some(async { json(ledger::acknowledge_export(db, tenant, &req.body::<ExportAck>().await?).await?) }.await),
        _ => None,
    }
}

async fn usage(req: &ApiRequest, db: &D1, tenant: &TenantId) -> Result<Response, ApiError> {
    let params: UsageParams = req.query()?;
    let query = ledger::usage_query(&params);
    let rows = db.usage_report(tenant, &query).await.map_err(openma_core::DomainError::from)?;
    if params.format.unwrap_or_default() == UsageFormat::Csv {
        let mut res = Response::ok(ledger::usage_csv(&query.group_by, rows)).map_err(|e| ApiError::new(500, e.to_string()))?;
        res.headers_mut().set("content-type", "text/csv; charset=utf-8").map_err(|e| ApiError::new(500, e.to_string()))?;
        return Ok(res);
    }
    json(ledger::usage_report(rows))
}
