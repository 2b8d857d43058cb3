//! `/v1/integrations` (openma extension): agents published to Slack. The signing secret
//! and the bot token are write-only. The provider's deliveries arrive at the paths each
//! integration names (see `crate::slack`), not under `/v1`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_core::DomainError;
use openma_types::integrations::{CreateIntegrationRequest, Integration};
use openma_types::{Deleted, ErrorEnvelope, ListPage};

use super::{ArchivedParam, CreatedFilter, PageParams, list_params};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/integrations", post(create_integration).get(list_integrations))
        .route("/v1/integrations/{integration_id}", get(get_integration).delete(delete_integration))
}

/// Publish an agent to Slack: mentions of the app and direct messages to it start or resume
/// the session of their thread, and its answers are posted there.
#[utoipa::path(post, path = "/v1/integrations", tag = "integrations", request_body = CreateIntegrationRequest,
    responses((status = 200, body = Integration), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn create_integration(State(app): State<AppState>, Caller(t): Caller, ApiJson(req): ApiJson<CreateIntegrationRequest>) -> Result<Json<Integration>, ApiError> {
    if let Some(url) = &req.api_base_url {
        crate::webhooks::check_destination(url, app.info.allow_private_fetch).map_err(|m| ApiError::from(DomainError::invalid(format!("`api_base_url`: {m}"))))?;
    }
    Ok(Json(app.platform.create_integration(&t, &req).await?))
}

/// Retrieve an integration (never its secrets).
#[utoipa::path(get, path = "/v1/integrations/{integration_id}", tag = "integrations", params(("integration_id" = String, Path, description = "The integration id")),
    responses((status = 200, body = Integration), (status = 404, body = ErrorEnvelope)))]
pub async fn get_integration(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Integration>, ApiError> {
    Ok(Json(app.platform.get_integration(&t, &id).await?))
}

/// List integrations, newest first.
#[utoipa::path(get, path = "/v1/integrations", tag = "integrations", params(PageParams),
    responses((status = 200, body = ListPage<Integration>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_integrations(State(app): State<AppState>, Caller(t): Caller, ApiQuery(page): ApiQuery<PageParams>) -> Result<Json<ListPage<Integration>>, ApiError> {
    let p = app.platform.list_integrations(&t, &list_params(page, &ArchivedParam::default(), &CreatedFilter::default(), None)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete an integration: its deliveries are refused from then on; its sessions stay.
#[utoipa::path(delete, path = "/v1/integrations/{integration_id}", tag = "integrations", params(("integration_id" = String, Path, description = "The integration id")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_integration(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Deleted>, ApiError> {
    app.platform.delete_integration(&t, &id).await?;
    Ok(Json(Deleted { id, kind: "integration_deleted".into() }))
}
