//! `/v1/sessions/{id}/resources`: files mounted into a session's sandbox, added and
//! removed while it lives.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_types::files::{DeletedSessionResource, FileResource, FileResourceParams, UpdateSessionResourceRequest};
use openma_types::sessions::SessionResource;
use openma_types::{ErrorEnvelope, ListPage};

use super::PageParams;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{session_id}/resources", post(add_resource).get(list_resources))
        .route(
            "/v1/sessions/{session_id}/resources/{resource_id}",
            get(get_resource).post(update_resource).delete(delete_resource),
        )
}

/// Mount a file into the session (read-only, below `/mnt/session/uploads/`). The session
/// gets its own copy with a new `file_id`.
#[utoipa::path(post, path = "/v1/sessions/{session_id}/resources", tag = "sessions", request_body = FileResourceParams,
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = FileResource), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn add_resource(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(session_id): ApiPath<String>,
    ApiJson(req): ApiJson<FileResourceParams>,
) -> Result<Json<FileResource>, ApiError> {
    let (resource, copy) = app.platform.session_files().add_file_resource(&t, &session_id, &req).await?;
    let mounts = [(resource, copy)];
    if let Err(e) = crate::session_files::place(&app.platform, &app.sandboxes, &session_id, &mounts).await {
        // not mounted: the resource must not stay as if it were
        let _ = app.platform.session_files().delete_session_resource(&t, &session_id, &mounts[0].0.id).await;
        return Err(e.into());
    }
    let [(resource, _)] = mounts;
    Ok(Json(resource))
}

/// List the session's resources in the order they were added (all of them without `limit`).
#[utoipa::path(get, path = "/v1/sessions/{session_id}/resources", tag = "sessions",
    params(("session_id" = String, Path, description = "The session id"), PageParams),
    responses((status = 200, body = ListPage<SessionResource>), (status = 404, body = ErrorEnvelope)))]
pub async fn list_resources(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(session_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListPage<SessionResource>>, ApiError> {
    let p = app.platform.session_files().list_session_resources(&t, &session_id, page.limit, page.page.as_deref()).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Retrieve one resource of the session.
#[utoipa::path(get, path = "/v1/sessions/{session_id}/resources/{resource_id}", tag = "sessions",
    params(("session_id" = String, Path, description = "The session id"), ("resource_id" = String, Path, description = "The resource id")),
    responses((status = 200, body = SessionResource), (status = 404, body = ErrorEnvelope)))]
pub async fn get_resource(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath((session_id, id)): ApiPath<(String, String)>,
) -> Result<Json<SessionResource>, ApiError> {
    Ok(Json(app.platform.session_files().get_session_resource(&t, &session_id, &id).await?))
}

/// Rotate a resource's `authorization_token` (GitHub repositories only).
#[utoipa::path(post, path = "/v1/sessions/{session_id}/resources/{resource_id}", tag = "sessions", request_body = UpdateSessionResourceRequest,
    params(("session_id" = String, Path, description = "The session id"), ("resource_id" = String, Path, description = "The resource id")),
    responses((status = 200, body = SessionResource), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_resource(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath((session_id, id)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateSessionResourceRequest>,
) -> Result<Json<SessionResource>, ApiError> {
    Ok(Json(app.platform.session_files().update_session_resource(&t, &session_id, &id, &req.authorization_token).await?))
}

/// Unmount a file: it disappears from the sandbox and its session copy is deleted.
#[utoipa::path(delete, path = "/v1/sessions/{session_id}/resources/{resource_id}", tag = "sessions",
    params(("session_id" = String, Path, description = "The session id"), ("resource_id" = String, Path, description = "The resource id")),
    responses((status = 200, body = DeletedSessionResource), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_resource(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath((session_id, id)): ApiPath<(String, String)>,
) -> Result<Json<DeletedSessionResource>, ApiError> {
    let removed = app.platform.session_files().delete_session_resource(&t, &session_id, &id).await?;
    if let Err(e) = app.sandboxes.remove_file(&session_id, &removed.mount_path) {
        tracing::warn!(%session_id, path = %removed.mount_path, error = %e, "cannot remove an unmounted file from the sandbox");
    }
    Ok(Json(DeletedSessionResource { id, tag: Default::default() }))
}
