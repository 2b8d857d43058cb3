//! `/v1/organizations/webhooks`: the organization's webhook endpoints (beta
//! `webhooks-2026-10-07`), and their delivery log (an openma extension). The signing
//! secret is returned only by create and regenerate.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_core::DomainError;
use openma_core::webhooks::IdPageParams;
use openma_types::webhooks::{
    CreateWebhookEndpointRequest, DeletedWebhookEndpoint, IdPage, NewWebhookEndpoint, UpdateWebhookEndpointRequest,
    WebhookDelivery, WebhookEndpoint, WebhookSigningSecret,
};
use openma_types::{ErrorEnvelope, ListPage};

use openma_types::query::EndpointListParams;

use super::{ArchivedParam, CreatedFilter, PageParams, list_params};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/organizations/webhooks", post(create_webhook_endpoint).get(list_webhook_endpoints))
        .route(
            "/v1/organizations/webhooks/{webhook_endpoint_id}",
            get(get_webhook_endpoint).post(update_webhook_endpoint).delete(delete_webhook_endpoint),
        )
        .route("/v1/organizations/webhooks/{webhook_endpoint_id}/regenerate_signing_secret", post(regenerate_signing_secret))
        .route("/v1/organizations/webhooks/{webhook_endpoint_id}/deliveries", get(list_deliveries))
}

fn destination(app: &AppState, url: &str) -> Result<(), ApiError> {
    crate::webhooks::check_destination(url, app.info.allow_private_fetch).map_err(|m| DomainError::invalid(m).into())
}

/// Create a webhook endpoint. The response is the only one that carries its signing secret.
#[utoipa::path(post, path = "/v1/organizations/webhooks", tag = "webhooks", request_body = CreateWebhookEndpointRequest,
    responses((status = 200, body = NewWebhookEndpoint), (status = 400, body = ErrorEnvelope)))]
pub async fn create_webhook_endpoint(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiJson(req): ApiJson<CreateWebhookEndpointRequest>,
) -> Result<Json<NewWebhookEndpoint>, ApiError> {
    destination(&app, &req.url)?;
    Ok(Json(app.platform.create_webhook_endpoint(&t, &req).await?))
}

/// Retrieve a webhook endpoint (without its signing secret).
#[utoipa::path(get, path = "/v1/organizations/webhooks/{webhook_endpoint_id}", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path, description = "The webhook endpoint id")),
    responses((status = 200, body = WebhookEndpoint), (status = 404, body = ErrorEnvelope)))]
pub async fn get_webhook_endpoint(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<WebhookEndpoint>, ApiError> {
    Ok(Json(app.platform.get_webhook_endpoint(&t, &id).await?))
}

/// Update a webhook endpoint; `state: disabled` stops deliveries.
#[utoipa::path(post, path = "/v1/organizations/webhooks/{webhook_endpoint_id}", tag = "webhooks", request_body = UpdateWebhookEndpointRequest,
    params(("webhook_endpoint_id" = String, Path, description = "The webhook endpoint id")),
    responses((status = 200, body = WebhookEndpoint), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn update_webhook_endpoint(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateWebhookEndpointRequest>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    if let Some(url) = &req.url {
        destination(&app, url)?;
    }
    Ok(Json(app.platform.update_webhook_endpoint(&t, &id, &req).await?))
}

/// List the organization's webhook endpoints (`after_id`/`before_id` paging).
#[utoipa::path(get, path = "/v1/organizations/webhooks", tag = "webhooks", params(EndpointListParams),
    responses((status = 200, body = IdPage<WebhookEndpoint>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_webhook_endpoints(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiQuery(q): ApiQuery<EndpointListParams>,
) -> Result<Json<IdPage<WebhookEndpoint>>, ApiError> {
    Ok(Json(app.platform.list_webhook_endpoints(&t, &IdPageParams::from(q)).await?))
}

/// Delete a webhook endpoint with its delivery log; queued deliveries are dropped.
#[utoipa::path(delete, path = "/v1/organizations/webhooks/{webhook_endpoint_id}", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path, description = "The webhook endpoint id")),
    responses((status = 200, body = DeletedWebhookEndpoint), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_webhook_endpoint(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<DeletedWebhookEndpoint>, ApiError> {
    app.platform.delete_webhook_endpoint(&t, &id).await?;
    Ok(Json(DeletedWebhookEndpoint { id, tag: Default::default() }))
}

/// Replace the signing secret; deliveries are signed with the new one from now on.
#[utoipa::path(post, path = "/v1/organizations/webhooks/{webhook_endpoint_id}/regenerate_signing_secret", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path, description = "The webhook endpoint id")),
    responses((status = 200, body = WebhookSigningSecret), (status = 404, body = ErrorEnvelope)))]
pub async fn regenerate_signing_secret(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<WebhookSigningSecret>, ApiError> {
    Ok(Json(WebhookSigningSecret { signing_secret: app.platform.regenerate_webhook_secret(&t, &id).await? }))
}

/// The delivery log of an endpoint, newest first (an openma extension): each event's
/// delivery with its status, attempts and last response.
#[utoipa::path(get, path = "/v1/organizations/webhooks/{webhook_endpoint_id}/deliveries", tag = "webhooks",
    params(("webhook_endpoint_id" = String, Path, description = "The webhook endpoint id"), PageParams),
    responses((status = 200, body = ListPage<WebhookDelivery>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_deliveries(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListPage<WebhookDelivery>>, ApiError> {
    let p = app.platform.list_webhook_deliveries(&t, &id, &list_params(page, &ArchivedParam::default(), &CreatedFilter::default(), None)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}
