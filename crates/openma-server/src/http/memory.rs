//! `/v1/memory_stores`, their memories and memory versions (beta `agent-memory-2026-07-22`).
//! Every write is attributed to the API key that made it.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_core::platform::MemoryListParams;
use openma_core::ports::VersionFilter;
use openma_types::memory::{
    Actor, CreateMemoryRequest, CreateMemoryStoreRequest, Memory, MemoryListItem, MemoryStore, MemoryVersion,
    UpdateMemoryRequest, UpdateMemoryStoreRequest,
};
pub use openma_types::query::{DeleteMemoryQuery, MemoryListQuery, MemoryView, VersionListQuery, ViewParam};
use openma_types::{Deleted, ErrorEnvelope, ListPage};

use super::{ArchivedParam, CreatedFilter, PageParams, list_params};
use crate::app::AppState;
use crate::auth::{Caller, KeyedCaller};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/memory_stores", post(create_store).get(list_stores))
        .route("/v1/memory_stores/{memory_store_id}", get(get_store).post(update_store).delete(delete_store))
        .route("/v1/memory_stores/{memory_store_id}/archive", post(archive_store))
        .route("/v1/memory_stores/{memory_store_id}/memories", post(create_memory).get(list_memories))
        .route(
            "/v1/memory_stores/{memory_store_id}/memories/{memory_id}",
            get(get_memory).post(update_memory).delete(delete_memory),
        )
        .route("/v1/memory_stores/{memory_store_id}/memory_versions", get(list_versions))
        .route("/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}", get(get_version))
        .route("/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}/redact", post(redact_version))
}

fn actor(c: &KeyedCaller) -> Actor {
    Actor::ApiActor { api_key_id: c.api_key_id.clone() }
}

/// Create a memory store.
#[utoipa::path(post, path = "/v1/memory_stores", tag = "memory", request_body = CreateMemoryStoreRequest,
    responses((status = 200, body = MemoryStore), (status = 400, body = ErrorEnvelope)))]
pub async fn create_store(State(app): State<AppState>, Caller(t): Caller, ApiJson(req): ApiJson<CreateMemoryStoreRequest>) -> Result<Json<MemoryStore>, ApiError> {
    Ok(Json(app.platform.create_memory_store(&t, &req).await?))
}

/// Retrieve a memory store.
#[utoipa::path(get, path = "/v1/memory_stores/{memory_store_id}", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id")),
    responses((status = 200, body = MemoryStore), (status = 404, body = ErrorEnvelope)))]
pub async fn get_store(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<MemoryStore>, ApiError> {
    Ok(Json(app.platform.get_memory_store(&t, &id).await?))
}

/// Update a memory store's name, description or metadata (not once archived).
#[utoipa::path(post, path = "/v1/memory_stores/{memory_store_id}", tag = "memory", request_body = UpdateMemoryStoreRequest,
    params(("memory_store_id" = String, Path, description = "The memory store id")),
    responses((status = 200, body = MemoryStore), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_store(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateMemoryStoreRequest>,
) -> Result<Json<MemoryStore>, ApiError> {
    Ok(Json(app.platform.update_memory_store(&t, &id, &req).await?))
}

/// List memory stores, newest first.
#[utoipa::path(get, path = "/v1/memory_stores", tag = "memory", params(PageParams, ArchivedParam, CreatedFilter),
    responses((status = 200, body = ListPage<MemoryStore>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_stores(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(archived): ApiQuery<ArchivedParam>,
    ApiQuery(created): ApiQuery<CreatedFilter>,
) -> Result<Json<ListPage<MemoryStore>>, ApiError> {
    let p = app.platform.list_memory_stores(&t, &list_params(page, &archived, &created, None)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete a memory store with all its memories and versions.
#[utoipa::path(delete, path = "/v1/memory_stores/{memory_store_id}", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_store(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Deleted>, ApiError> {
    app.platform.delete_memory_store(&t, &id).await?;
    Ok(Json(Deleted { id, kind: "memory_store_deleted".into() }))
}

/// Archive a memory store for good: it becomes read-only.
#[utoipa::path(post, path = "/v1/memory_stores/{memory_store_id}/archive", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id")),
    responses((status = 200, body = MemoryStore), (status = 404, body = ErrorEnvelope)))]
pub async fn archive_store(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<MemoryStore>, ApiError> {
    Ok(Json(app.platform.archive_memory_store(&t, &id).await?))
}

/// Create a memory at a path (409 `memory_path_conflict_error` when the path is taken).
#[utoipa::path(post, path = "/v1/memory_stores/{memory_store_id}/memories", tag = "memory", request_body = CreateMemoryRequest,
    params(("memory_store_id" = String, Path, description = "The memory store id"), ViewParam),
    responses((status = 200, body = Memory), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn create_memory(
    State(app): State<AppState>,
    c: KeyedCaller,
    ApiPath(store): ApiPath<String>,
    ApiQuery(view): ApiQuery<ViewParam>,
    ApiJson(req): ApiJson<CreateMemoryRequest>,
) -> Result<Json<Memory>, ApiError> {
    Ok(Json(app.platform.create_memory(&c.tenant, &store, &req, &actor(&c), view.full(MemoryView::Basic)).await?))
}

/// Retrieve a memory.
#[utoipa::path(get, path = "/v1/memory_stores/{memory_store_id}/memories/{memory_id}", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id"), ("memory_id" = String, Path, description = "The memory id"), ViewParam),
    responses((status = 200, body = Memory), (status = 404, body = ErrorEnvelope)))]
pub async fn get_memory(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath((store, id)): ApiPath<(String, String)>,
    ApiQuery(view): ApiQuery<ViewParam>,
) -> Result<Json<Memory>, ApiError> {
    Ok(Json(app.platform.get_memory(&t, &store, &id, view.full(MemoryView::Full)).await?))
}

/// Change a memory's content and/or path, optionally only if its content is as expected.
#[utoipa::path(post, path = "/v1/memory_stores/{memory_store_id}/memories/{memory_id}", tag = "memory", request_body = UpdateMemoryRequest,
    params(("memory_store_id" = String, Path, description = "The memory store id"), ("memory_id" = String, Path, description = "The memory id"), ViewParam),
    responses((status = 200, body = Memory), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn update_memory(
    State(app): State<AppState>,
    c: KeyedCaller,
    ApiPath((store, id)): ApiPath<(String, String)>,
    ApiQuery(view): ApiQuery<ViewParam>,
    ApiJson(req): ApiJson<UpdateMemoryRequest>,
) -> Result<Json<Memory>, ApiError> {
    Ok(Json(app.platform.update_memory(&c.tenant, &store, &id, &req, &actor(&c), view.full(MemoryView::Basic)).await?))
}

/// List memories in path order; `depth=1` rolls deeper ones up into `memory_prefix` items.
#[utoipa::path(get, path = "/v1/memory_stores/{memory_store_id}/memories", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id"), MemoryListQuery, PageParams, ViewParam),
    responses((status = 200, body = ListPage<MemoryListItem>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_memories(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(store): ApiPath<String>,
    ApiQuery(q): ApiQuery<MemoryListQuery>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(view): ApiQuery<ViewParam>,
) -> Result<Json<ListPage<MemoryListItem>>, ApiError> {
    let params = MemoryListParams {
        path_prefix: q.path_prefix,
        depth: q.depth,
        limit: page.limit,
        page: page.page,
        full: view.full(MemoryView::Basic),
    };
    let p = app.platform.list_memories(&t, &store, &params).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete a memory, optionally only if its content is as expected. Its versions stay.
#[utoipa::path(delete, path = "/v1/memory_stores/{memory_store_id}/memories/{memory_id}", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id"), ("memory_id" = String, Path, description = "The memory id"), DeleteMemoryQuery),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn delete_memory(
    State(app): State<AppState>,
    c: KeyedCaller,
    ApiPath((store, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DeleteMemoryQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let expected = q.expected_content_sha256.as_deref();
    app.platform.delete_memory(&c.tenant, &store, &id, expected, &actor(&c)).await?;
    Ok(Json(Deleted { id, kind: "memory_deleted".into() }))
}

/// Retrieve a memory version.
#[utoipa::path(get, path = "/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id"), ("memory_version_id" = String, Path, description = "The memory version id"), ViewParam),
    responses((status = 200, body = MemoryVersion), (status = 404, body = ErrorEnvelope)))]
pub async fn get_version(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath((store, id)): ApiPath<(String, String)>,
    ApiQuery(view): ApiQuery<ViewParam>,
) -> Result<Json<MemoryVersion>, ApiError> {
    Ok(Json(app.platform.get_memory_version(&t, &store, &id, view.full(MemoryView::Full)).await?))
}

/// List a store's memory versions, newest first.
#[utoipa::path(get, path = "/v1/memory_stores/{memory_store_id}/memory_versions", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id"), VersionListQuery, CreatedFilter, PageParams, ViewParam),
    responses((status = 200, body = ListPage<MemoryVersion>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_versions(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(store): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionListQuery>,
    ApiQuery(created): ApiQuery<CreatedFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(view): ApiQuery<ViewParam>,
) -> Result<Json<ListPage<MemoryVersion>>, ApiError> {
    let filter = VersionFilter {
        memory_id: q.memory_id,
        operation: q.operation,
        api_key_id: q.api_key_id,
        session_id: q.session_id,
        service_account_id: q.service_account_id,
    };
    let params = list_params(page, &ArchivedParam::default(), &created, None);
    let p = app.platform.list_memory_versions(&t, &store, &filter, &params, view.full(MemoryView::Basic)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Redact a version: its content, digest and path are erased; who wrote it and when stay.
#[utoipa::path(post, path = "/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}/redact", tag = "memory",
    params(("memory_store_id" = String, Path, description = "The memory store id"), ("memory_version_id" = String, Path, description = "The memory version id")),
    responses((status = 200, body = MemoryVersion), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn redact_version(State(app): State<AppState>, c: KeyedCaller, ApiPath((store, id)): ApiPath<(String, String)>) -> Result<Json<MemoryVersion>, ApiError> {
    Ok(Json(app.platform.redact_memory_version(&c.tenant, &store, &id, &actor(&c)).await?))
}
