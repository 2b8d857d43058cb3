//! `GET /v1/usage`: the ledger summed by agent, session, model, kind and/or day, as JSON
//! or CSV.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openma_core::ledger;
use openma_types::usage::{ExportAck, ExportPage, ExportParams, UsageFormat, UsageParams, UsageReport};
use openma_types::ErrorEnvelope;

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

/// Pull ledger entries for an external billing system, in a stable order.
#[utoipa::path(get, path = "/v1/usage/export", tag = "usage", params(ExportParams),
    responses((status = 200, body = ExportPage), (status = 400, body = ErrorEnvelope)))]
pub async fn export(State(app): State<AppState>, Caller(t): Caller, ApiQuery(q): ApiQuery<ExportParams>) -> Result<Json<ExportPage>, ApiError> {
    Ok(Json(ledger::export_page(&*app.platform.store, &t, &q, app.platform.clock.now()).await?))
}

/// Acknowledge everything up to a cursor: the next export without `after` starts there.
/// Acknowledgements only move forward.
#[utoipa::path(post, path = "/v1/usage/export/ack", tag = "usage", request_body = ExportAck,
    responses((status = 200, body = ExportAck), (status = 400, body = ErrorEnvelope)))]
pub async fn export_ack(State(app): State<AppState>, Caller(t): Caller, crate::extract::ApiJson(req): crate::extract::ApiJson<ExportAck>) -> Result<Json<ExportAck>, ApiError> {
    Ok(Json(ledger::acknowledge_export(&*app.platform.store, &t, &req).await?))
}
