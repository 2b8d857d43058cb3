//! `/v1/sessions/{id}/threads`: a single-agent session has exactly one thread, the
//! primary one, whose log and stream are the session's.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_types::events::SessionEvent;
use openma_types::sessions::{Session, SessionThread};
use openma_types::{ErrorEnvelope, ListPage};

use openma_types::query::{EventListParams, StreamParams, ThreadFilter};

use super::events::{list_events, stream_events};
use super::{CreatedFilter, PageParams};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{session_id}/threads", get(list_threads))
        .route("/v1/sessions/{session_id}/threads/{thread_id}", get(get_thread))
        .route("/v1/sessions/{session_id}/threads/{thread_id}/archive", post(archive_thread))
        .route("/v1/sessions/{session_id}/threads/{thread_id}/events", get(list_thread_events))
        .route("/v1/sessions/{session_id}/threads/{thread_id}/stream", get(stream_thread))
}

pub use openma_core::sessions::threads::primary_thread_id;
use openma_core::sessions::threads::{self, primary};

async fn checked(app: &AppState, tenant: &openma_core::TenantId, session_id: &str, thread_id: &str) -> Result<Session, ApiError> {
    let s = app.platform.get_session(tenant, session_id).await?;
    threads::check(&s, thread_id)?;
    Ok(s)
}

/// List a session's threads (the primary thread).
#[utoipa::path(get, path = "/v1/sessions/{session_id}/threads", tag = "threads",
    params(("session_id" = String, Path, description = "The session id"), PageParams, ThreadFilter),
    responses((status = 200, body = ListPage<SessionThread>), (status = 404, body = ErrorEnvelope)))]
pub async fn list_threads(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<ThreadFilter>,
) -> Result<Json<ListPage<SessionThread>>, ApiError> {
    let s = app.platform.get_session(&tenant, &id).await?;
    Ok(Json(ListPage { data: threads::list(s, &page, &filter)?, next_page: None }))
}

/// Retrieve a thread.
#[utoipa::path(get, path = "/v1/sessions/{session_id}/threads/{thread_id}", tag = "threads",
    params(("session_id" = String, Path, description = "The session id"), ("thread_id" = String, Path, description = "The thread id")),
    responses((status = 200, body = SessionThread), (status = 404, body = ErrorEnvelope)))]
pub async fn get_thread(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath((sid, tid)): ApiPath<(String, String)>,
) -> Result<Json<SessionThread>, ApiError> {
    Ok(Json(primary(checked(&app, &tenant, &sid, &tid).await?)))
}

/// Archive a thread. The primary thread lives and ends with its session.
#[utoipa::path(post, path = "/v1/sessions/{session_id}/threads/{thread_id}/archive", tag = "threads",
    params(("session_id" = String, Path, description = "The session id"), ("thread_id" = String, Path, description = "The thread id")),
    responses((status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn archive_thread(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath((sid, tid)): ApiPath<(String, String)>,
) -> Result<Json<SessionThread>, ApiError> {
    checked(&app, &tenant, &sid, &tid).await?;
    Err(threads::archive_refused().into())
}

/// List a thread's events.
#[utoipa::path(get, path = "/v1/sessions/{session_id}/threads/{thread_id}/events", tag = "threads",
    params(("session_id" = String, Path, description = "The session id"), ("thread_id" = String, Path, description = "The thread id"), PageParams, CreatedFilter, EventListParams),
    responses((status = 200, body = ListPage<SessionEvent>), (status = 404, body = ErrorEnvelope)))]
pub async fn list_thread_events(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath((sid, tid)): ApiPath<(String, String)>,
    page: ApiQuery<PageParams>,
    created: ApiQuery<CreatedFilter>,
    q: ApiQuery<EventListParams>,
) -> Result<Json<ListPage<SessionEvent>>, ApiError> {
    checked(&app, &caller.0, &sid, &tid).await?;
    list_events(State(app), caller, ApiPath(sid), page, created, q).await
}

/// Stream a thread's events (Server-Sent Events), as the session stream.
#[utoipa::path(get, path = "/v1/sessions/{session_id}/threads/{thread_id}/stream", tag = "threads",
    params(("session_id" = String, Path, description = "The session id"), ("thread_id" = String, Path, description = "The thread id"), StreamParams),
    responses((status = 200, description = "text/event-stream of session events", content_type = "text/event-stream"), (status = 404, body = ErrorEnvelope)))]
pub async fn stream_thread(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath((sid, tid)): ApiPath<(String, String)>,
    q: ApiQuery<StreamParams>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    checked(&app, &caller.0, &sid, &tid).await?;
    let sse = stream_events(State(app), caller, ApiPath(sid), q, headers).await?;
    Ok(axum::response::IntoResponse::into_response(sse))
}
