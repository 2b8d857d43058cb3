//! `/v1/environments`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_types::environments::{CreateEnvironmentRequest, Environment, EnvironmentBuild, UpdateEnvironmentRequest};
use openma_types::{Deleted, ErrorEnvelope, ListPage};

use super::{ArchivedParam, CreatedFilter, PageParams, list_params};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/environments", post(create_environment).get(list_environments))
        .route(
            "/v1/environments/{environment_id}",
            get(get_environment).post(update_environment).delete(delete_environment),
        )
        .route("/v1/environments/{environment_id}/archive", post(archive_environment))
        .route("/v1/environments/{environment_id}/build", get(get_environment_build))
}

/// Create an environment.
#[utoipa::path(post, path = "/v1/environments", tag = "environments", request_body = CreateEnvironmentRequest,
    responses((status = 200, body = Environment), (status = 400, body = ErrorEnvelope)))]
pub async fn create_environment(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(req): ApiJson<CreateEnvironmentRequest>,
) -> Result<Json<Environment>, ApiError> {
    let env = app.platform.create_environment(&tenant, &req).await?;
    crate::environment_packages::start_build(&app, &env);
    Ok(Json(env))
}

/// Retrieve an environment.
#[utoipa::path(get, path = "/v1/environments/{environment_id}", tag = "environments",
    params(("environment_id" = String, Path, description = "The environment id")),
    responses((status = 200, body = Environment), (status = 404, body = ErrorEnvelope)))]
pub async fn get_environment(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Environment>, ApiError> {
    Ok(Json(app.platform.get_environment(&tenant, &id).await?))
}

/// Update an environment; omitted configuration keys keep their values.
#[utoipa::path(post, path = "/v1/environments/{environment_id}", tag = "environments", request_body = UpdateEnvironmentRequest,
    params(("environment_id" = String, Path, description = "The environment id")),
    responses((status = 200, body = Environment), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_environment(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateEnvironmentRequest>,
) -> Result<Json<Environment>, ApiError> {
    let env = app.platform.update_environment(&tenant, &id, &req).await?;
    if req.config.as_ref().is_some_and(Option::is_some) {
        crate::environment_packages::start_build(&app, &env);
    }
    Ok(Json(env))
}

/// openma extension: the build of the environment's packages into the read-only layer its
/// sessions mount (`pending`, `building`, `ready` or `failed`, with the managers' log) on
/// this server.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/build", tag = "environments",
    params(("environment_id" = String, Path, description = "The environment id")),
    responses((status = 200, body = EnvironmentBuild), (status = 404, body = ErrorEnvelope)))]
pub async fn get_environment_build(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EnvironmentBuild>, ApiError> {
    Ok(Json(crate::environment_packages::build_of(&app, &tenant, &id).await?))
}

/// List environments, newest first.
#[utoipa::path(get, path = "/v1/environments", tag = "environments", params(PageParams, ArchivedParam),
    responses((status = 200, body = ListPage<Environment>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_environments(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(archived): ApiQuery<ArchivedParam>,
) -> Result<Json<ListPage<Environment>>, ApiError> {
    let p = app.platform.list_environments(&tenant, &list_params(page, &archived, &CreatedFilter::default(), None)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete an environment; refused (409) while a session that is not terminated uses it.
#[utoipa::path(delete, path = "/v1/environments/{environment_id}", tag = "environments",
    params(("environment_id" = String, Path, description = "The environment id")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn delete_environment(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    app.platform.delete_environment(&tenant, &id).await?;
    Ok(Json(Deleted { id, kind: "environment_deleted".into() }))
}

/// Archive an environment: read-only, no new sessions.
#[utoipa::path(post, path = "/v1/environments/{environment_id}/archive", tag = "environments",
    params(("environment_id" = String, Path, description = "The environment id")),
    responses((status = 200, body = Environment), (status = 404, body = ErrorEnvelope)))]
pub async fn archive_environment(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Environment>, ApiError> {
    Ok(Json(app.platform.archive_environment(&tenant, &id).await?))
}
