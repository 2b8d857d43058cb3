//! `/v1/agents` and `/v1/agents/{id}/versions`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_types::agents::{Agent, CreateAgentRequest, UpdateAgentRequest};
use openma_types::{ErrorEnvelope, ListPage};

use openma_types::query::VersionParam;

use super::{ArchivedParam, CreatedFilter, PageParams, list_params};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agents", post(create_agent).get(list_agents))
        .route("/v1/agents/{agent_id}", get(get_agent).post(update_agent))
        .route("/v1/agents/{agent_id}/archive", post(archive_agent))
        .route("/v1/agents/{agent_id}/versions", get(list_agent_versions))
}

/// Create an agent (version 1).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = CreateAgentRequest,
    responses((status = 200, body = Agent), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
pub async fn create_agent(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(req): ApiJson<CreateAgentRequest>,
) -> Result<Json<Agent>, ApiError> {
    Ok(Json(app.platform.create_agent(&tenant, &req).await?))
}

/// Retrieve an agent, or one of its versions.
#[utoipa::path(get, path = "/v1/agents/{agent_id}", tag = "agents",
    params(("agent_id" = String, Path, description = "The agent id"), VersionParam),
    responses((status = 200, body = Agent), (status = 404, body = ErrorEnvelope)))]
pub async fn get_agent(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(v): ApiQuery<VersionParam>,
) -> Result<Json<Agent>, ApiError> {
    Ok(Json(app.platform.get_agent(&tenant, &id, v.version).await?))
}

/// Update an agent. A change creates a new version; a no-op does not. A `version` that
/// is not the current one is a 409.
#[utoipa::path(post, path = "/v1/agents/{agent_id}", tag = "agents", request_body = UpdateAgentRequest,
    params(("agent_id" = String, Path, description = "The agent id")),
    responses((status = 200, body = Agent), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn update_agent(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateAgentRequest>,
) -> Result<Json<Agent>, ApiError> {
    Ok(Json(app.platform.update_agent(&tenant, &id, &req).await?))
}

/// List agents, newest first.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(PageParams, ArchivedParam, CreatedFilter),
    responses((status = 200, body = ListPage<Agent>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_agents(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(archived): ApiQuery<ArchivedParam>,
    ApiQuery(created): ApiQuery<CreatedFilter>,
) -> Result<Json<ListPage<Agent>>, ApiError> {
    let p = app.platform.list_agents(&tenant, &list_params(page, &archived, &created, None)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Archive an agent: it stays readable but starts no new sessions.
#[utoipa::path(post, path = "/v1/agents/{agent_id}/archive", tag = "agents",
    params(("agent_id" = String, Path, description = "The agent id")),
    responses((status = 200, body = Agent), (status = 404, body = ErrorEnvelope)))]
pub async fn archive_agent(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Agent>, ApiError> {
    Ok(Json(app.platform.archive_agent(&tenant, &id).await?))
}

/// List an agent's versions, newest first (the current version included).
#[utoipa::path(get, path = "/v1/agents/{agent_id}/versions", tag = "agents",
    params(("agent_id" = String, Path, description = "The agent id"), PageParams),
    responses((status = 200, body = ListPage<Agent>), (status = 404, body = ErrorEnvelope)))]
pub async fn list_agent_versions(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListPage<Agent>>, ApiError> {
    let p = app.platform.list_agent_versions(&tenant, &id, page.limit, page.page.as_deref()).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}
