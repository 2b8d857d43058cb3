//! `/v1/sessions`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_core::DomainError;
use openma_core::ports::SessionFilter;
use openma_types::query::SessionListParams;
use openma_types::sessions::{CreateSessionRequest, Session, UpdateSessionRequest};
use openma_types::{BidiPage, Deleted, ErrorEnvelope};

use super::{ArchivedParam, CreatedFilter, PageParams, list_params};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", post(create_session).get(list_sessions))
        .route("/v1/sessions/{session_id}", get(get_session).post(update_session).delete(delete_session))
        .route("/v1/sessions/{session_id}/archive", post(archive_session))
}

/// Create a session. It starts `idle`, pinned to the agent version it names.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = CreateSessionRequest,
    responses((status = 200, body = Session), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn create_session(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(req): ApiJson<CreateSessionRequest>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(create(&app, &tenant, req).await?))
}

/// Creates a session with everything its sandbox needs (for the API and the integrations).
pub async fn create(app: &AppState, tenant: &openma_core::TenantId, req: CreateSessionRequest) -> Result<Session, DomainError> {
    let app = app.clone();
    let starts = req.initial_events.as_ref().is_some_and(|e| !e.is_empty());
    if app.platform.check_quota(tenant, starts).await? {
        metrics::counter!("openma_tenant_soft_limit_exceeded_total").increment(1);
        tracing::warn!(%tenant, "tenant is over its soft monthly spend limit");
    }
    if let Some(env_id) = &req.environment_id {
        // before the session exists: one on packages that cannot be built would only fail later
        let env = app.platform.get_environment(tenant, env_id).await?;
        crate::environment_packages::check_buildable(&app, &env).await?;
    }
    let (session, initial) = app.platform.create_session(tenant, &req).await?;
    // the session is usable once its sandbox holds what it names; otherwise it goes again
    if let Err(e) = prepare_sandbox(&app, tenant, &session, &req).await {
        let _ = app.platform.delete_session(tenant, &session.id).await;
        let _ = app.destroy_sandbox(&session.id).await;
        return Err(e);
    }
    if initial.is_empty() {
        return Ok(session);
    }
    // persisted, in order, before the response: exactly as if POSTed right after create
    app.runtime.submit(tenant, &session.id, initial).await?;
    app.platform.get_session(tenant, &session.id).await
}

/// Puts into a new session's sandbox what it names: its network policy, its environment's
/// packages and limits, memory mounts, skills, mounted files and cloned repositories.
async fn prepare_sandbox(app: &AppState, tenant: &openma_core::TenantId, session: &Session, req: &CreateSessionRequest) -> Result<(), DomainError> {
    let backend = |e: std::io::Error| DomainError::Store(openma_core::StoreError::Backend(e.to_string()));
    crate::session_network::apply(&app.platform, &app.sandboxes, tenant, session).await?;
    let env = app.platform.get_environment(tenant, &session.environment_id).await?;
    crate::environment_packages::prepare(app, &env, &session.id).map_err(backend)?;
    crate::session_memory::prepare(&app.sandboxes, session).map_err(backend)?;
    crate::session_files::install_skills(&app.platform, &app.sandboxes, tenant, session).await?;
    if !session.resources.is_empty() {
        let mounts = app.platform.session_files().session_mounts(tenant, &session.id).await?;
        crate::session_files::place(&app.platform, &app.sandboxes, &session.id, &mounts).await?;
        let repositories = openma_core::files::resource_params(req.resources.as_deref().unwrap_or_default())?.repositories;
        crate::session_repos::clone_all(&app.info.github_url, &app.sandboxes, session, &repositories).await?;
    }
    // cluster mode: whichever node runs the session first starts from this
    if let Some(cluster) = app.runtime.cluster() {
        cluster.snapshots.save(&session.id).await.map_err(backend)?;
    }
    Ok(())
}

/// Retrieve a session.
#[utoipa::path(get, path = "/v1/sessions/{session_id}", tag = "sessions",
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = Session), (status = 404, body = ErrorEnvelope)))]
pub async fn get_session(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(app.platform.get_session(&tenant, &id).await?))
}

/// Update a session's title, metadata, or (while idle) its tools and MCP servers.
#[utoipa::path(post, path = "/v1/sessions/{session_id}", tag = "sessions", request_body = UpdateSessionRequest,
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = Session), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn update_session(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateSessionRequest>,
) -> Result<Json<Session>, ApiError> {
    let before = app.platform.get_session(&tenant, &id).await?;
    let after = app.platform.update_session(&tenant, &id, &req).await?;
    // the agent's MCP servers may be allowed hosts of a limited environment
    if before.agent.mcp_servers != after.agent.mcp_servers
        && let Err(e) = crate::session_network::apply(&app.platform, &app.sandboxes, &tenant, &after).await
    {
        tracing::warn!(session_id = %id, error = %e, "cannot update the sandbox's network policy");
    }
    if let Some(payload) = openma_core::sessions::updated_event(&before, &after) {
        app.runtime.session_updated(&tenant, &id, payload);
    }
    Ok(Json(after))
}

/// List sessions (newest first by default), walkable in both directions.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", params(PageParams, ArchivedParam, CreatedFilter, SessionListParams),
    responses((status = 200, body = BidiPage<Session>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_sessions(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(archived): ApiQuery<ArchivedParam>,
    ApiQuery(created): ApiQuery<CreatedFilter>,
    ApiQuery(q): ApiQuery<SessionListParams>,
) -> Result<Json<BidiPage<Session>>, ApiError> {
    let params = list_params(page, &archived, &created, q.order);
    // No deployment or memory store exists yet, so those filters match nothing.
    if q.deployment_id.is_some() || q.memory_store_id.is_some() {
        app.platform.list_sessions(&tenant, &params, &SessionFilter::default()).await?;
        return Ok(Json(BidiPage { data: Vec::new(), next_page: None, prev_page: None }));
    }
    let filter = SessionFilter { agent_id: q.agent_id, agent_version: q.agent_version, statuses: q.statuses };
    let p = app.platform.list_sessions(&tenant, &params, &filter).await?;
    Ok(Json(BidiPage { data: p.data, next_page: p.next_page, prev_page: p.prev_page }))
}

/// Delete a session and its history; refused while it runs.
#[utoipa::path(delete, path = "/v1/sessions/{session_id}", tag = "sessions",
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_session(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    app.platform.delete_session(&tenant, &id).await?;
    app.runtime.session_deleted(&id);
    app.outputs.forget(&id);
    app.memory_sync.forget(&id);
    // the workspace goes with the session
    if let Err(e) = app.destroy_sandbox(&id).await {
        tracing::warn!(session_id = %id, error = %e, "cannot remove the session's sandbox");
    }
    Ok(Json(Deleted { id, kind: "session_deleted".into() }))
}

/// Archive a session: it becomes `terminated` and read-only.
#[utoipa::path(post, path = "/v1/sessions/{session_id}/archive", tag = "sessions",
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = Session), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn archive_session(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(app.runtime.archive(&tenant, &id).await?))
}
