//! `/v1/sessions/{id}/threads`: a single-agent session has exactly one thread, the
//! primary one, whose log and stream are the session's.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_types::events::SessionEvent;
use openma_types::sessions::{Session, SessionThread};
use openma_types::{ErrorEnvelope, ListPage};

use openma_types::query::{EventListParams, StreamParams};

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

/// The primary thread's id: derived from the session's, so it is stable and needs no row.
pub fn primary_thread_id(session_id: &str) -> String {
    format!("sthr_{}", session_id.strip_prefix("sesn_").unwrap_or(session_id))
}

fn primary(s: Session) -> SessionThread {
    SessionThread {
        id: primary_thread_id(&s.id),
        tag: Default::default(),
        session_id: s.id,
        agent: s.agent,
        status: s.status,
        parent_thread_id: None,
        stats: s.stats,
        usage: s.usage,
        workflow_run_id: None,
        created_at: s.created_at,
        updated_at: s.updated_at,
        archived_at: s.archived_at,
    }
}

async fn checked(app: &AppState, tenant: &openma_core::TenantId, session_id: &str, thread_id: &str) -> Result<Session, ApiError> {
    let s = app.platform.get_session(tenant, session_id).await?;
    if thread_id != primary_thread_id(&s.id) {
        return Err(ApiError::not_found(format!("thread `{thread_id}` not found in session `{session_id}`")));
    }
    Ok(s)
}

/// Filters of the thread list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThreadFilter {
    /// Any of these statuses (repeat the parameter).
    #[serde(rename = "statuses[]", alias = "statuses", default)]
    pub statuses: Vec<openma_types::sessions::SessionStatus>,
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
    if let Some(l) = page.limit
        && !(1..=1000).contains(&l)
    {
        return Err(ApiError::bad_request(format!("`limit` must be between 1 and 1000, got {l}")));
    }
    if page.page.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(ApiError::bad_request("`page` cursor is not valid: the thread list has a single page"));
    }
    let s = app.platform.get_session(&tenant, &id).await?;
    let wanted = filter.statuses.is_empty() || filter.statuses.contains(&s.status);
    let data = if wanted { vec![primary(s)] } else { Vec::new() };
    Ok(Json(ListPage { data, next_page: None }))
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
    Err(ApiError::bad_request("the primary thread cannot be archived on its own; archive the session instead"))
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
